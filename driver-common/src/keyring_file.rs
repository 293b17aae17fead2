//! The keyring file, in Serf's format: a JSON array of base64-encoded keys, the primary first.
//! A driver given [`crate::Options::keyring_file`] loads it at start (it then overrides the
//! configuration's keyring) and writes it back after every change of the node's keyring —
//! [`crate::Pump`] watches [`rookery_core::Node::keyring_version`] — whether the change was
//! made on this node or arrived as a cluster-wide key operation. The file is written to a
//! temporary file beside it and renamed over it, readable by its owner only on Unix.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rookery_core::{Keyring, KeyringError};

/// Why a keyring file could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyringFileError {
    /// Reading or writing the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not a JSON array of strings.
    NotJson(String),
    /// An entry is not valid base64.
    BadBase64 {
        /// Its position in the array (0 is the primary).
        index: usize,
    },
    /// The keys do not form a keyring (bad length, duplicate, none).
    Keyring(KeyringError),
}

impl fmt::Display for KeyringFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringFileError::Io { path, source } => {
                write!(f, "keyring file {}: {source}", path.display())
            }
            KeyringFileError::NotJson(e) => {
                write!(f, "keyring file is not a JSON array of strings: {e}")
            }
            KeyringFileError::BadBase64 { index } => {
                write!(f, "keyring file entry {index} is not base64")
            }
            KeyringFileError::Keyring(e) => write!(f, "keyring file: {e}"),
        }
    }
}

impl std::error::Error for KeyringFileError {}

/// Parse a keyring file's contents.
pub fn parse_keyring(text: &str) -> Result<Keyring, KeyringFileError> {
    let entries: Vec<String> =
        serde_json::from_str(text).map_err(|e| KeyringFileError::NotJson(e.to_string()))?;
    let keys = entries
        .iter()
        .enumerate()
        .map(|(index, e)| {
            STANDARD
                .decode(e.trim())
                .map_err(|_| KeyringFileError::BadBase64 { index })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Keyring::from_keys(&keys).map_err(KeyringFileError::Keyring)
}

/// A keyring file's contents for `ring`.
pub fn format_keyring(ring: &Keyring) -> String {
    let entries: Vec<String> = ring.keys().map(|k| STANDARD.encode(k)).collect();
    serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".to_string())
}

/// Start-up wiring every driver shares: when [`crate::Options::keyring_file`] names an
/// existing file, its keyring replaces `config`'s. Call [`crate::Pump::set_keyring_file`] once
/// the pump exists so the file is kept up to date.
pub fn apply_keyring_file(
    config: &mut rookery_core::Config,
    options: &crate::Options,
) -> Result<(), crate::StartError> {
    if let Some(path) = &options.keyring_file {
        if let Some(ring) = load_keyring(path).map_err(crate::StartError::KeyringFile)? {
            config.keyring = Some(ring);
        }
    }
    Ok(())
}

/// Read the keyring file at `path`; `Ok(None)` when it does not exist.
pub fn load_keyring(path: &Path) -> Result<Option<Keyring>, KeyringFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_keyring(&text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyringFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write `ring` to the keyring file at `path` (a temporary file renamed over it).
pub fn save_keyring(path: &Path, ring: &Keyring) -> Result<(), KeyringFileError> {
    let io = |source| KeyringFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, format_keyring(ring).as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_serfs_format() {
        let mut ring = Keyring::new(&[7; 32]).unwrap();
        ring.install(&[8; 16]).unwrap();
        let text = format_keyring(&ring);
        assert!(
            text.contains("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="),
            "{text}"
        );
        assert_eq!(parse_keyring(&text).unwrap(), ring);
        // Serf's own files: a plain JSON list.
        let serf = r#"["CAgICAgICAgICAgICAgICA==","BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="]"#;
        let r = parse_keyring(serf).unwrap();
        assert_eq!(r.primary(), &[8; 16]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn bad_files_are_typed_errors() {
        assert!(matches!(
            parse_keyring("{}"),
            Err(KeyringFileError::NotJson(_))
        ));
        assert!(matches!(
            parse_keyring(r#"["!!"]"#),
            Err(KeyringFileError::BadBase64 { index: 0 })
        ));
        assert!(matches!(
            parse_keyring(r#"["AAAA"]"#),
            Err(KeyringFileError::Keyring(KeyringError::BadKeyLength(3)))
        ));
        assert!(matches!(
            parse_keyring("[]"),
            Err(KeyringFileError::Keyring(KeyringError::Empty))
        ));
    }

    #[test]
    fn save_then_load() {
        let dir = std::env::temp_dir().join(format!("rookery-keyring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring.json");
        assert!(load_keyring(&path).unwrap().is_none());
        let ring = Keyring::from_keys(&[[1u8; 24], [2; 24]]).unwrap();
        save_keyring(&path, &ring).unwrap();
        assert_eq!(load_keyring(&path).unwrap(), Some(ring));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
