//! [`SecretStore`] on a JSON file (`{"name": "value", …}`) in the data directory.
//!
//! Writes replace the file atomically (a temporary file with mode 0600 in the same
//! directory, `fsync`, `rename`, `fsync` of the directory), so a crash leaves either the old
//! or the new file, never half of one, and the secrets are never readable by other users.
//! Reads are served from memory; the file is looked at again (and reloaded if it changed, say
//! edited by an operator) at most once a second.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::ports::{Secret, SecretError, SecretStore};

/// The file's name in a data directory.
pub const SECRETS_FILE: &str = "secrets.json";

/// How long a read trusts the cached file without looking at it again.
const RECHECK: Duration = Duration::from_secs(1);

/// Secrets in a JSON file. Cheap to clone.
#[derive(Clone)]
pub struct FileSecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    cache: Mutex<Cache>,
    /// Serialises writers, so concurrent `put`s do not lose each other's secrets.
    writing: Mutex<()>,
}

#[derive(Default)]
struct Cache {
    secrets: BTreeMap<String, String>,
    stamp: Option<Stamp>,
    checked: Option<Instant>,
}

/// What tells a changed file from the one cached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SecretError {
    SecretError::Unavailable(e.into())
}

impl FileSecretStore {
    /// The secrets in the file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSecretStore {
            inner: Arc::new(Inner {
                path: path.into(),
                cache: Mutex::new(Cache::default()),
                writing: Mutex::new(()),
            }),
        }
    }

    /// The secrets in [`SECRETS_FILE`] of the data directory `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        FileSecretStore::new(dir.join(SECRETS_FILE))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The secret `name`, stored first as `make` makes it if the file has none. Blocking.
    /// (Two processes making it at the same instant could each write their own; the data
    /// directory has one `holub serve`, and the key is made when it first starts.)
    pub fn get_or_insert_with(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<Secret, SecretError> {
        let value = self
            .inner
            .update(name, |held| held.is_none().then(make))?
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))?;
        Ok(Secret::new(value))
    }
}

impl fmt::Debug for FileSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSecretStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value from the cache, if the cache is fresh enough to answer.
    fn cached(&self, name: &str) -> Option<Option<String>> {
        let cache = self.cache();
        let fresh = cache.checked.is_some_and(|at| at.elapsed() < RECHECK);
        fresh.then(|| cache.secrets.get(name).cloned())
    }

    /// Reloads the cache if the file changed since it was read. Blocking.
    fn refresh(&self) -> Result<(), SecretError> {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(unavailable(e)),
        };
        let unchanged = {
            let cache = self.cache();
            cache.checked.is_some() && cache.stamp == stamp
        };
        let secrets = if unchanged { None } else { Some(self.load()?) };
        let mut cache = self.cache();
        if let Some(secrets) = secrets {
            cache.secrets = secrets;
            cache.stamp = stamp;
        }
        cache.checked = Some(Instant::now());
        Ok(())
    }

    /// Reads the file; a missing file holds no secrets. Blocking.
    fn load(&self) -> Result<BTreeMap<String, String>, SecretError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                unavailable(format!(
                    "{} is not a JSON object of strings: {e}",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Sets one secret and rewrites the file atomically. Blocking.
    fn put(&self, name: &str, value: &str) -> Result<(), SecretError> {
        self.update(name, |_| Some(value.to_owned())).map(|_| ())
    }

    /// Sets `name` to what `change` makes of its value in the file (`None` leaves the file
    /// alone), rewriting the file atomically; answers the value afterwards. Blocking.
    fn update(
        &self,
        name: &str,
        change: impl FnOnce(Option<&String>) -> Option<String>,
    ) -> Result<Option<String>, SecretError> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // From the file, not the cache: the file may have been edited since.
        let mut secrets = self.load()?;
        let Some(value) = change(secrets.get(name)) else {
            return Ok(secrets.get(name).cloned());
        };
        secrets.insert(name.to_owned(), value.clone());
        let json = serde_json::to_vec_pretty(&secrets).map_err(unavailable)?;
        write_atomically(&self.path, &json).map_err(unavailable)?;
        let stamp = fs::metadata(&self.path).ok().map(|m| Stamp::of(&m));
        let mut cache = self.cache();
        cache.secrets = secrets;
        cache.stamp = stamp;
        cache.checked = Some(Instant::now());
        Ok(Some(value))
    }
}

/// Replaces `path` with `contents`: temporary file (0600), fsync, rename, fsync directory.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir)?;

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| SECRETS_FILE.to_owned());
    let temp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable only once the directory is.
    #[cfg(unix)]
    File::open(&dir)?.sync_all()?;
    Ok(())
}

impl FileSecretStore {
    /// The value, from the cache if it is fresh enough and `fresh` is not asked for, else
    /// from the file if it changed.
    async fn read(&self, name: &str, fresh: bool) -> Result<Secret, SecretError> {
        let cached = if fresh { None } else { self.inner.cached(name) };
        let value = match cached {
            Some(value) => value,
            None => {
                let inner = Arc::clone(&self.inner);
                let wanted = name.to_owned();
                tokio::task::spawn_blocking(move || {
                    inner.refresh()?;
                    Ok::<_, SecretError>(inner.cache().secrets.get(&wanted).cloned())
                })
                .await
                .map_err(unavailable)??
            }
        };
        value
            .map(Secret::new)
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        self.read(name, false).await
    }

    async fn get_fresh(&self, name: &str) -> Result<Secret, SecretError> {
        self.read(name, true).await
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        let inner = Arc::clone(&self.inner);
        let (name, value) = (name.to_owned(), value.expose().to_owned());
        tokio::task::spawn_blocking(move || inner.put(&name, &value))
            .await
            .map_err(unavailable)?
    }
}

/// What only a file has: its mode, its atomic replacement and what an unreadable file does.
/// (Storing, reading and rotating are in the contract suite, `tests/tests/contract.rs`.)
#[cfg(test)]
mod tests {
    use super::*;

    /// A directory in the temp directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            TempDir(std::env::temp_dir().join(format!(
                "holub-file-secrets-{name}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn secrets_are_kept_in_a_private_file_replaced_whole() {
        let dir = TempDir::new("private");
        let path = dir.0.join("nested");
        let secrets = FileSecretStore::in_dir(&path);
        secrets
            .put("kyivstar", &Secret::new("s3cret"))
            .await
            .unwrap();
        secrets
            .put("lifecell", &Secret::new("other"))
            .await
            .unwrap();
        secrets
            .put("kyivstar", &Secret::new("rotated"))
            .await
            .unwrap();

        let file = path.join(SECRETS_FILE);
        let stored: BTreeMap<String, String> =
            serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            stored,
            BTreeMap::from([
                ("kyivstar".to_owned(), "rotated".to_owned()),
                ("lifecell".to_owned(), "other".to_owned()),
            ])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SECRETS_FILE]);
    }

    #[tokio::test]
    async fn a_file_edited_by_hand_is_read_again_and_a_broken_one_is_an_error() {
        let dir = TempDir::new("edited");
        let secrets = FileSecretStore::in_dir(&dir.0);
        secrets.put("a", &Secret::new("one")).await.unwrap();
        assert_eq!(secrets.get("a").await.unwrap().expose(), "one");

        // An operator's edit is seen once the cache is older than RECHECK.
        fs::write(secrets.path(), r#"{"a": "two", "b": "three"}"#).unwrap();
        tokio::time::sleep(RECHECK + Duration::from_millis(100)).await;
        assert_eq!(secrets.get("a").await.unwrap().expose(), "two");
        assert_eq!(secrets.get("b").await.unwrap().expose(), "three");

        // A file that is not a JSON object of strings is an error, not an empty store.
        fs::write(secrets.path(), "not json").unwrap();
        let err = FileSecretStore::new(secrets.path())
            .get("a")
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Unavailable(_)), "{err:?}");
    }
}
