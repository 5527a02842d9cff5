//! Images from OCI registries (E2B's `fromImage('python:3.12')`): pulled once with `oci-client`,
//! their layers applied in order ([`unpack`]), set up for sandboxes ([`provision`]) and kept by
//! the digest of their manifest, immutable, beside the base image: `<images>/oci/<hex>/rootfs`
//! (see `layout.rs`). A pulled image is the template `oci-<hex>`, which the engine finds there
//! by name (snapshots on it name it too, and outlive a server's restart).
//!
//! A reference is looked up in its registry on every pull (a tag may have moved); where the
//! registry cannot be reached, the digest the reference had at its last pull is used, if that
//! image is here (`refs.json`): builds keep working offline.

pub mod confined;
mod provision;
mod unpack;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The names of the templates that are pulled images.
pub const TEMPLATE_PREFIX: &str = "oci-";

/// Where images come from, besides what their references name.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    /// Docker Hub's images are pulled from here instead (`host[:port]`, or `http://host[:port]`
    /// for one without TLS), as dockerd's `registry-mirrors`.
    pub mirror: Option<String>,
    /// Registries spoken to over plain HTTP (`host[:port]`); those on a loopback address always are.
    pub insecure: Vec<String>,
}

/// The credentials a pull presents (E2B's `fromImage(image, {username, password})`).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

/// Without the password: credentials may end up in a log.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <password>)"),
        }
    }
}

/// A pull that failed: the reference as given, and why.
#[derive(Debug, thiserror::Error)]
#[error("image {reference:?}: {message}")]
pub struct ImageError {
    pub reference: String,
    pub message: String,
}

/// A pulled image.
#[derive(Clone, Debug)]
pub struct OciImage {
    dir: PathBuf,
}

/// What is kept about a pulled image beside its root (`image.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The reference it was pulled by, in full (`docker.io/library/python:3.12`).
    pub reference: String,
    /// The digest of its manifest.
    pub digest: String,
    /// Its configuration's environment (`KEY=value`): what its processes run with.
    pub env: Vec<String>,
    /// The bytes of its layers, compressed.
    pub size: u64,
}

impl OciImage {
    /// The template it is.
    pub fn template_name(&self) -> String {
        let hex = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{TEMPLATE_PREFIX}{hex}")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    fn info_path(&self) -> PathBuf {
        self.dir.join("image.json")
    }
    /// Its `image.json` (written last: an image without one was never finished).
    pub fn info(&self) -> Option<ImageInfo> {
        serde_json::from_slice(&fs::read(self.info_path()).ok()?).ok()
    }
    /// Its environment as pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        let env = self.info().map(|i| i.env).unwrap_or_default();
        env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

/// The pulled image that is the template `name`, if it is in `oci_dir` complete.
pub fn find(oci_dir: &Path, name: &str) -> Option<OciImage> {
    let hex = name.strip_prefix(TEMPLATE_PREFIX)?;
    let image = OciImage { dir: oci_dir.join(hex) };
    (is_hex_digest(hex) && image.info_path().is_file()).then_some(image)
}

fn is_hex_digest(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Pulls `reference` into `oci_dir` unless its digest is there already; `progress` gets a line
/// per step (the build's log).
pub async fn pull(
    oci_dir: &Path,
    reference: &str,
    credentials: &Credentials,
    registries: &Registries,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<OciImage, ImageError> {
    let fail = |message: String| ImageError { reference: reference.to_string(), message };
    let wanted: Reference = reference.trim().parse().map_err(|e| fail(format!("not an image reference: {e}")))?;
    let source = registries.source(&wanted);
    let client = Client::new(registries.client_config(source.resolve_registry()));
    let auth = match credentials {
        Credentials::Anonymous => RegistryAuth::Anonymous,
        Credentials::Basic { username, password } => RegistryAuth::Basic(username.clone(), password.clone()),
    };
    progress(format!("Pulling {wanted} from {}", source.resolve_registry()));
    let started = Instant::now();
    let (manifest, digest) = match client.pull_image_manifest(&source, &auth).await {
        Ok(found) => found,
        Err(e) => {
            let why = describe(&e, &source);
            return match known(oci_dir, &wanted) {
                Some(image) if unreachable(&e) => {
                    progress(format!("{why}: using the image {wanted} was at its last pull"));
                    Ok(image)
                }
                _ => Err(fail(why)),
            };
        }
    };
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| is_hex_digest(h))
        .ok_or_else(|| fail(format!("unexpected digest {digest:?}")))?;
    let image = OciImage { dir: oci_dir.join(hex) };
    let complete = |image: &OciImage| image.info().is_some();
    if !complete(&image) {
        fs::create_dir_all(oci_dir).map_err(|e| fail(format!("create {}: {e}", oci_dir.display())))?;
        // One lock for every pull (pulls are rare): a lock file per image would stay behind.
        let lock_path = oci_dir.join(".pull.lock");
        let _lock = tokio::task::spawn_blocking(move || crate::base_image::lock(&lock_path, "an image"))
            .await
            .expect("the lock task does not panic")
            .map_err(|e| fail(e.to_string()))?;
        if !complete(&image) {
            let fetched = fetch(&client, &source, &manifest, &digest, &image, progress).await;
            if fetched.is_err() {
                // What a failed pull downloaded is no use to the next one.
                let _ = crate::tree::remove_tree(&staging_of(&image));
            }
            let info = fetched.map_err(fail)?;
            progress(format!(
                "Pulled {wanted} ({digest}, {:.1} MB) in {:.1} s",
                info.size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ));
        }
    } else {
        progress(format!("Image {wanted} is here already ({digest})"));
    }
    remember(oci_dir, &wanted, &digest);
    Ok(image)
}

/// Downloads the image's configuration and layers into `.<hex>.pulling/`, applies the layers,
/// provisions the root and moves it to the image's place.
async fn fetch(
    client: &Client,
    source: &Reference,
    manifest: &oci_client::manifest::OciImageManifest,
    digest: &str,
    image: &OciImage,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<ImageInfo, String> {
    let staging = staging_of(image);
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| format!("{what}: {e}")
    };
    crate::tree::remove_tree(&staging).map_err(io("remove", &staging))?;
    let (blobs, rootfs) = (staging.join("blobs"), staging.join("rootfs"));
    for dir in [&blobs, &rootfs] {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let mut config = Vec::new();
    client.pull_blob(source, &manifest.config, &mut config).await.map_err(|e| describe(&e, source))?;
    let config: oci_client::config::ConfigFile =
        serde_json::from_slice(&config).map_err(|e| format!("its configuration is not an image's: {e}"))?;
    let mut files = Vec::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let short = layer.digest.trim_start_matches("sha256:").get(..12).unwrap_or(&layer.digest).to_string();
        progress(format!("Layer {}/{} {short}: {:.1} MB", i + 1, manifest.layers.len(), layer.size as f64 / 1e6));
        let path = blobs.join(i.to_string());
        let file = tokio::fs::File::create(&path).await.map_err(io("create", &path))?;
        let mut out = tokio::io::BufWriter::new(file);
        client.pull_blob(source, layer, &mut out).await.map_err(|e| describe(&e, source))?;
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(io("write", &path))?;
        files.push(path);
    }
    progress("Unpacking the layers".to_string());
    let info = ImageInfo {
        reference: source.whole(),
        digest: digest.to_string(),
        env: config.config.and_then(|c| c.env).unwrap_or_default(),
        size: manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
    };
    let (dir, json) = (image.dir.clone(), serde_json::to_vec_pretty(&info).expect("JSON"));
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let root = rootfs.canonicalize().map_err(io("resolve", &rootfs))?;
        for (i, blob) in files.iter().enumerate() {
            unpack::apply(&root, blob).map_err(|e| format!("layer {}: {e}", i + 1))?;
            let _ = fs::remove_file(blob);
        }
        provision::provision(&root)?;
        fs::write(staging.join("image.json"), json).map_err(io("write", &staging))?;
        let _ = fs::remove_dir(&blobs);
        fs::rename(&staging, &dir).map_err(io("move the image to", &dir))
    })
    .await
    .expect("unpacking does not panic")?;
    Ok(info)
}

/// Where `image` is put together while it is pulled.
fn staging_of(image: &OciImage) -> PathBuf {
    let name = image.dir.file_name().unwrap_or_default().to_string_lossy();
    image.dir.with_file_name(format!(".{name}.pulling"))
}

impl Registries {
    /// Where `wanted` is pulled from: the mirror for Docker Hub's images, if there is one.
    fn source(&self, wanted: &Reference) -> Reference {
        let Some(mirror) = self.mirror.as_deref() else { return wanted.clone() };
        if wanted.registry() != "docker.io" {
            return wanted.clone();
        }
        let host = mirror.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
        let (registry, repository) = (host.to_string(), wanted.repository().to_string());
        match (wanted.tag(), wanted.digest()) {
            (Some(tag), Some(digest)) => {
                Reference::with_tag_and_digest(registry, repository, tag.to_string(), digest.to_string())
            }
            (_, Some(digest)) => Reference::with_digest(registry, repository, digest.to_string()),
            (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").to_string()),
        }
    }

    fn client_config(&self, registry: &str) -> ClientConfig {
        let mirror_is_http = self
            .mirror
            .as_deref()
            .is_some_and(|m| m.strip_prefix("http://").is_some_and(|host| host.trim_end_matches('/') == registry));
        let plain = mirror_is_http || self.insecure.iter().any(|r| r == registry) || is_loopback(registry);
        ClientConfig {
            protocol: if plain { ClientProtocol::Http } else { ClientProtocol::Https },
            // Trusted as the base image trusts them: a TLS-inspecting proxy signs with one.
            extra_root_certificates: crate::base_image::host_certificates()
                .into_iter()
                .map(|(_, data)| Certificate { encoding: CertificateEncoding::Pem, data })
                .collect(),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        }
    }
}

/// Whether `registry` (`host[:port]`) is on a loopback address, as Docker treats as insecure.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a pull failed for want of the registry (no connection, no answer in time), not
/// because it answered no.
fn unreachable(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout())
}

/// What a registry's failure means for the user.
fn describe(e: &OciDistributionError, source: &Reference) -> String {
    let registry = source.resolve_registry();
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            format!("{registry} refused access (private image? give its registry's username and password): {e}")
        }
        OciDistributionError::ImageManifestNotFoundError(m) => format!("not found in {registry}: {m}"),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| format!("{:?}", x.code).contains("Unknown")) =>
        {
            format!("not found in {registry}: {e}")
        }
        OciDistributionError::ServerError { code: 404, .. } => format!("not found in {registry}"),
        e if unreachable(e) => format!("cannot reach the registry {registry}: {e}"),
        e => format!("pulling from {registry}: {e}"),
    }
}

/// The image `wanted` was at its last pull, if it is here.
fn known(oci_dir: &Path, wanted: &Reference) -> Option<OciImage> {
    let digest = refs(oci_dir).remove(&wanted.whole())?;
    find(oci_dir, &format!("{TEMPLATE_PREFIX}{}", digest.strip_prefix("sha256:")?))
}

fn refs(oci_dir: &Path) -> BTreeMap<String, String> {
    fs::read(oci_dir.join("refs.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Records the digest `wanted` has now (written aside and renamed: readers see whole files).
fn remember(oci_dir: &Path, wanted: &Reference, digest: &str) {
    let mut all = refs(oci_dir);
    if all.get(&wanted.whole()).map(String::as_str) == Some(digest) {
        return;
    }
    all.insert(wanted.whole(), digest.to_string());
    let tmp = oci_dir.join(format!(".refs.json.{}", std::process::id()));
    let written = fs::write(&tmp, serde_json::to_vec_pretty(&all).expect("JSON"))
        .and_then(|()| fs::rename(&tmp, oci_dir.join("refs.json")));
    if let Err(e) = written {
        tracing::warn!("recording the digest of {wanted}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_images_go_to_the_mirror_and_others_do_not() {
        let r = Registries { mirror: Some("http://127.0.0.1:5000/".into()), insecure: vec![] };
        let hub: Reference = "python:3.12".parse().unwrap();
        let source = r.source(&hub);
        assert_eq!(source.whole(), "127.0.0.1:5000/library/python:3.12");
        assert_eq!(r.client_config(source.resolve_registry()).protocol, ClientProtocol::Http);
        let other: Reference =
            "ghcr.io/org/tool@sha256:0000000000000000000000000000000000000000000000000000000000000000".parse().unwrap();
        assert_eq!(r.source(&other).whole(), other.whole());
        assert_eq!(r.client_config("ghcr.io").protocol, ClientProtocol::Https);
        assert_eq!(Registries::default().source(&hub).resolve_registry(), "index.docker.io");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for r in ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.2"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["registry.example.com:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn only_complete_images_named_by_a_digest_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        fs::create_dir_all(tmp.path().join(&hex).join("rootfs")).unwrap();
        assert!(find(tmp.path(), &format!("oci-{hex}")).is_none(), "no image.json yet");
        fs::write(
            tmp.path().join(&hex).join("image.json"),
            r#"{"reference":"r","digest":"d","env":["A=1=2"],"size":1}"#,
        )
        .unwrap();
        let image = find(tmp.path(), &format!("oci-{hex}")).unwrap();
        assert_eq!(image.template_name(), format!("oci-{hex}"));
        assert_eq!(image.env(), [("A".to_string(), "1=2".to_string())]);
        assert!(find(tmp.path(), "oci-../x").is_none() && find(tmp.path(), "base").is_none());
    }
}
