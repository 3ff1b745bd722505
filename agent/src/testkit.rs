//! Fixtures for in-process tests and benchmarks of whole passes: settings rooted in a
//! temporary folder, so a pass runs against real files and a real SQLite store with
//! the recording doubles standing in for systemd only.

use std::path::Path;
use std::time::Duration;

use leger_config::{Environment, Mode, Settings};

/// Settings with every path under `root`, the generator's dry run off (the test bed
/// runs the real generator), a short health gate and no metrics listener.
pub fn settings_in(root: &Path) -> Settings {
    let env = Environment {
        home: Some(root.to_owned()),
        ..Environment::default()
    };
    let mut s = Settings::defaults(Mode::System, &env).expect("default settings are valid");
    s.paths.config_dir = root.join("etc");
    s.paths.desired_file = root.join("etc/desired.toml");
    s.paths.quadlet_dir = root.join("quadlets");
    s.paths.state_dir = root.join("state");
    s.paths.socket = root.join("run/legerd.sock");
    s.quadlet.generator_dry_run = false;
    s.health.timeout = Duration::from_secs(5);
    s.health.settle = Duration::ZERO;
    s.metrics.listen = None;
    s
}
