//! `git-age`: `secrets/NAME.age` files in the source tree, encrypted to one or more
//! recipients (agenix-style). legerd decrypts them with the node identity and, when
//! configured, an SSH ed25519 host key.

use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use super::{NodeIdentity, SecretError, SecretValue};

/// Decrypts one `.age` file (binary or ASCII-armored). `file` names it in errors.
pub fn decrypt(
    file: &str,
    bytes: &[u8],
    node: &NodeIdentity,
    ssh_identity: Option<&Path>,
) -> Result<SecretValue, SecretError> {
    let fail = |reason: String| SecretError::GitAgeDecrypt {
        file: file.to_owned(),
        reason,
    };
    let ssh = match ssh_identity {
        Some(path) => Some(load_ssh(path)?),
        None => None,
    };
    let mut identities: Vec<&dyn age::Identity> = vec![node.age_identity()];
    if let Some(s) = &ssh {
        identities.push(s);
    }
    let reader = age::armor::ArmoredReader::new(bytes);
    let decryptor = age::Decryptor::new(reader).map_err(|e| fail(e.to_string()))?;
    let mut stream = decryptor
        .decrypt(identities.into_iter())
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::new());
    stream
        .read_to_end(&mut out)
        .map_err(|e| fail(e.to_string()))?;
    Ok(SecretValue::from(std::mem::take(&mut *out)))
}

fn load_ssh(path: &Path) -> Result<age::ssh::Identity, SecretError> {
    let fail = |reason: String| SecretError::SshIdentity {
        path: path.to_owned(),
        reason,
    };
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
    let id = age::ssh::Identity::from_buffer(&text[..], Some(path.display().to_string()))
        .map_err(|e| fail(e.to_string()))?;
    match id {
        age::ssh::Identity::Unencrypted(_) => Ok(id),
        age::ssh::Identity::Encrypted(_) => Err(fail("the key is passphrase-protected".into())),
        age::ssh::Identity::Unsupported(_) => Err(fail("unsupported key type".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn git_age_decrypts_file_for_node_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeIdentity::load_or_create(dir.path()).unwrap();
        let other = age::x25519::Identity::generate();
        let recipient = age::x25519::Recipient::from_str(&node.recipient()).unwrap();
        // Encrypted to two recipients, as a fleet file would be.
        let enc = age::Encryptor::with_recipients(
            [&recipient as &dyn age::Recipient, &other.to_public()].into_iter(),
        )
        .unwrap();
        let mut ct = Vec::new();
        let mut w = enc.wrap_output(&mut ct).unwrap();
        std::io::Write::write_all(&mut w, b"s3cret").unwrap();
        w.finish().unwrap();
        let v = decrypt("secrets/db-pass.age", &ct, &node, None).unwrap();
        assert_eq!(v.expose(), b"s3cret");
    }

    #[test]
    fn git_age_wrong_identity_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeIdentity::load_or_create(dir.path()).unwrap();
        let other = age::x25519::Identity::generate();
        let ct = age::encrypt(&other.to_public(), b"s3cret").unwrap();
        let e = decrypt("secrets/db-pass.age", &ct, &node, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secrets/db-pass.age is not encrypted to this node"),
            "{e}"
        );
        assert!(e.contains("legerctl identity"), "{e}");
        assert!(!e.contains("s3cret"));
        let e = decrypt("secrets/x.age", b"not age", &node, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("secrets/x.age"), "{e}");
    }

    #[test]
    fn git_age_accepts_ssh_ed25519_identity() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeIdentity::load_or_create(dir.path()).unwrap();
        let key = dir.path().join("ssh_host_ed25519_key");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status();
        let Ok(st) = st else {
            panic!("ssh-keygen is needed for this test");
        };
        assert!(st.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let recipient = age::ssh::Recipient::from_str(public.trim()).unwrap();
        let ct = age::encrypt(&recipient, b"from-ssh").unwrap();
        assert!(decrypt("secrets/a.age", &ct, &node, None).is_err());
        let v = decrypt("secrets/a.age", &ct, &node, Some(&key)).unwrap();
        assert_eq!(v.expose(), b"from-ssh");
    }
}
