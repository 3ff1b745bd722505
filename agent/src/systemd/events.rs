//! Unit state changes as a stream, from systemd's `PropertiesChanged` signals.
//!
//! The controller uses it to notice a managed unit that left `active` (crashed, or was
//! stopped by hand) and reconcile again, instead of waiting for its next timer.

use std::collections::HashMap;

use futures::{Stream, StreamExt, future};
use zbus::message::Type as MessageType;
use zbus::{MatchRule, Message, OwnedObjectPath, Variant};

/// The object path prefix systemd puts every unit under.
pub(crate) const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit";

/// The unit interface whose `ActiveState` changes we follow.
pub(crate) const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";

/// A unit's active state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitEvent {
    /// The unit name, e.g. `web.service`.
    pub unit: String,
    /// Its new ActiveState: `active`, `inactive`, `failed`, `activating`, `deactivating`.
    pub active_state: String,
}

/// The object path systemd gives `unit`, escaped as `sd_bus_path_encode` does: every byte
/// that is not an ASCII letter (or a digit after the first byte) becomes `_xx`.
///
/// Computing it saves a `GetUnit` round trip and works before the unit is loaded, so a
/// signal subscription can be set up before the job that loads the unit.
pub fn unit_object_path(unit: &str) -> String {
    let mut path = String::with_capacity(UNIT_PATH_PREFIX.len() + 1 + unit.len() * 3);
    path.push_str(UNIT_PATH_PREFIX);
    path.push('/');
    if unit.is_empty() {
        path.push('_');
    }
    for (i, byte) in unit.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (i > 0 && byte.is_ascii_digit()) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("_{byte:02x}"));
        }
    }
    path
}

/// The unit name of a unit object path (`…/unit/web_2eservice` → `web.service`), or `None`
/// when the path is not a unit's or its escaping is broken.
pub fn unit_name_from_path(path: &str) -> Option<String> {
    let label = path.strip_prefix(UNIT_PATH_PREFIX)?.strip_prefix('/')?;
    if label.is_empty() || label.contains('/') {
        return None;
    }
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The match rule for `PropertiesChanged` of the Unit interface, on one unit's path or on
/// every unit's.
pub(crate) fn properties_changed_rule(path: Option<&str>) -> zbus::Result<MatchRule<'static>> {
    let builder = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender("org.freedesktop.systemd1")
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .arg(0, UNIT_INTERFACE);
    let builder = match path {
        Some(path) => builder.path(path.to_owned()),
        None => builder.path_namespace(UNIT_PATH_PREFIX),
    };
    Ok(builder.build()?.into_owned())
}

/// The `ActiveState` carried by a Unit-interface `PropertiesChanged` signal, if any.
pub(crate) fn active_state_change(msg: &Message) -> Option<String> {
    let body = msg.body();
    let (interface, changed, _invalidated): (&str, HashMap<&str, Variant<'_>>, Vec<&str>) =
        body.deserialize().ok()?;
    if interface != UNIT_INTERFACE {
        return None;
    }
    let state: &str = changed.get("ActiveState")?.downcast_ref().ok()?;
    Some(state.to_owned())
}

/// Turns a `PropertiesChanged` message into a [`UnitEvent`], skipping everything else.
pub(crate) fn unit_event(msg: &Message) -> Option<UnitEvent> {
    let header = msg.header();
    let path: OwnedObjectPath = header.path()?.to_owned().into();
    let unit = unit_name_from_path(path.as_str())?;
    let active_state = active_state_change(msg)?;
    Some(UnitEvent { unit, active_state })
}

/// Maps a stream of bus messages to unit events, dropping errors and unrelated messages.
pub(crate) fn unit_events_from(
    messages: zbus::MessageStream,
) -> impl Stream<Item = UnitEvent> + Send + Unpin + 'static {
    messages.filter_map(|msg| future::ready(msg.ok().as_ref().and_then(unit_event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_object_path_escapes_like_systemd() {
        // Paths as busctl shows them on systemd 257.
        assert_eq!(
            unit_object_path("hello.service"),
            "/org/freedesktop/systemd1/unit/hello_2eservice"
        );
        assert_eq!(
            unit_object_path("data-volume.service"),
            "/org/freedesktop/systemd1/unit/data_2dvolume_2eservice"
        );
        assert_eq!(
            unit_object_path("user@1000.service"),
            "/org/freedesktop/systemd1/unit/user_401000_2eservice"
        );
        assert_eq!(
            unit_object_path("1web_x.service"),
            "/org/freedesktop/systemd1/unit/_31web_5fx_2eservice"
        );
    }

    #[test]
    fn unit_name_from_path_reverses_escaping() {
        for unit in [
            "hello.service",
            "data-volume.service",
            "user@1000.service",
            "1web_x.service",
            "a\\x2db.mount",
            "",
        ] {
            assert_eq!(
                unit_name_from_path(&unit_object_path(unit)).as_deref(),
                Some(unit)
            );
        }
    }

    #[test]
    fn unit_name_from_path_rejects_other_paths() {
        assert_eq!(unit_name_from_path("/org/freedesktop/systemd1"), None);
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/job/42"),
            None
        );
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/unit/bad_2"),
            None
        );
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/unit/bad_zzx"),
            None
        );
    }

    #[test]
    fn properties_changed_rule_matches_units() {
        let all = properties_changed_rule(None).unwrap().to_string();
        assert!(
            all.contains("path_namespace='/org/freedesktop/systemd1/unit'"),
            "{all}"
        );
        assert!(
            all.contains("arg0='org.freedesktop.systemd1.Unit'"),
            "{all}"
        );
        let one = properties_changed_rule(Some(&unit_object_path("a.service")))
            .unwrap()
            .to_string();
        assert!(
            one.contains("path='/org/freedesktop/systemd1/unit/a_2eservice'"),
            "{one}"
        );
    }

    #[test]
    fn unit_event_decodes_properties_changed() {
        let mut changed: HashMap<&str, Variant<'_>> = HashMap::new();
        changed.insert("ActiveState", Variant::from("failed"));
        changed.insert("SubState", Variant::from("failed"));
        let msg = Message::signal(
            unit_object_path("web.service").as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .build(&(UNIT_INTERFACE, changed, Vec::<&str>::new()))
        .unwrap();
        assert_eq!(
            unit_event(&msg),
            Some(UnitEvent {
                unit: "web.service".into(),
                active_state: "failed".into()
            })
        );

        let mut other: HashMap<&str, Variant<'_>> = HashMap::new();
        other.insert("MainPID", Variant::from(42u32));
        let msg = Message::signal(
            unit_object_path("web.service").as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .build(&(UNIT_INTERFACE, other, Vec::<&str>::new()))
        .unwrap();
        assert_eq!(unit_event(&msg), None);
    }
}
