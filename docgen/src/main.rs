//! `leger-docgen OUT_DIR`: writes legerctl's and legerd's man pages and shell
//! completions under OUT_DIR (see the library for the layout). Run by
//! `contrib/package.sh`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: leger-docgen OUT_DIR\n  writes man/ and completions/ for legerctl and legerd"
        );
        return ExitCode::from(2);
    };
    match leger_docgen::generate(std::path::Path::new(&out)) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leger-docgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
