//! The node's age identity: created once at `<state>/identity.age` (mode 0600) and used
//! to encrypt the local store, to decrypt `git-age` files, and (through a derived key) to
//! tag values for change detection.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{SecretError, SecretValue};

/// File name of the identity inside the state dir.
pub const IDENTITY_FILE: &str = "identity.age";

/// The node's X25519 identity plus the MAC key derived from it.
pub struct NodeIdentity {
    identity: age::x25519::Identity,
    path: PathBuf,
    mac_key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("path", &self.path)
            .field("recipient", &self.recipient())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads `<state_dir>/identity.age`, creating it (0600) on first start.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, SecretError> {
        let path = state_dir.join(IDENTITY_FILE);
        let io = |what: &'static str| {
            let path = path.clone();
            move |source| SecretError::Identity { path, what, source }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = age::x25519::Identity::generate();
                let secret = identity.to_string();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io("create"))?;
                writeln!(
                    f,
                    "# legerd node identity; public key: {}",
                    identity.to_public()
                )
                .and_then(|()| writeln!(f, "{}", secret.expose_secret()))
                .and_then(|()| f.sync_all())
                .map_err(io("write"))?;
                tracing::info!(path = %path.display(), recipient = %identity.to_public(), "created the node identity");
                return Ok(Self::from_identity(identity, path));
            }
            Err(e) => return Err(io("read")(e)),
        };
        // Tighten a file someone loosened: the key must stay private.
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("set mode 0600 on"))?;
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| SecretError::IdentityInvalid { path: path.clone() })?;
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| SecretError::IdentityInvalid { path: path.clone() })?;
        Ok(Self::from_identity(identity, path))
    }

    fn from_identity(identity: age::x25519::Identity, path: PathBuf) -> Self {
        let secret = identity.to_string();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"leger secret change-detection key v1");
        let mac_key = zeroize::Zeroizing::new(mac.finalize().into_bytes().into());
        NodeIdentity {
            identity,
            path,
            mac_key,
        }
    }

    /// The public recipient (`age1...`) operators encrypt secrets for this node to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// The identity file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The age identity, to decrypt with.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    /// Encrypts a value to this node, for the local store.
    pub fn encrypt(&self, value: &SecretValue) -> Result<Vec<u8>, SecretError> {
        age::encrypt(&self.identity.to_public(), value.expose())
            .map_err(|e| SecretError::Encrypt(e.to_string()))
    }

    /// Decrypts a value of the local store.
    pub fn decrypt(&self, name: &str, ciphertext: &[u8]) -> Result<SecretValue, SecretError> {
        age::decrypt(&self.identity, ciphertext)
            .map(SecretValue::from)
            .map_err(|e| SecretError::LocalDecrypt {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// A keyed tag of `name` and `value`: equal tags mean an unchanged value. Keyed, so
    /// the tag stored in SQLite says nothing about the value to someone without the key.
    pub fn mac(&self, name: &str, value: &SecretValue) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key.as_ref())
            .expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(value.expose());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeIdentity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = NodeIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.recipient(), b.recipient());
        assert!(a.recipient().starts_with("age1"));
        let v = SecretValue::from(b"hunter2".to_vec());
        assert_eq!(a.mac("x", &v), b.mac("x", &v));
        assert_ne!(a.mac("x", &v), a.mac("y", &v));
        let ct = a.encrypt(&v).unwrap();
        assert_eq!(b.decrypt("x", &ct).unwrap().expose(), b"hunter2");
        assert!(!format!("{a:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn identity_garbage_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "nonsense\n").unwrap();
        let e = NodeIdentity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity.age"), "{e}");
    }
}
