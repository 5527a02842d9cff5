//! The snapshot archive: one file that carries a snapshot to another server
//! ([`crate::Engine::export_snapshot`], [`crate::Engine::import_snapshot`]). Version 1 of the
//! format, a contract: a reader refuses any other version, and a change to anything below is a
//! new version.
//!
//! The file is one zstd frame with its content checksum on. What it decompresses to:
//!
//! ```text
//! MAGIC                        b"sandbank-snapshot-archive\n"
//! section 'M'                  the manifest, JSON ([`Manifest`]): format, version, the snapshot's record,
//!                              the template and base image its layers were made over, how many layers
//! section 'L', one per layer   a POSIX tar of the layer's directory (its `root/` and `usr/`), topmost
//!                              layer first: the whole chain, so the snapshot starts on its own
//! section 'D'                  the digest, JSON `{"sha256": "<hex>"}`: SHA-256 of every byte above,
//!                              this section's kind byte included
//! (end of the frame)
//!
//! section := kind (1 byte), then chunks: a big-endian u32 length and that many bytes; a
//!            length of 0 ends the section
//! ```
//!
//! The manifest comes first so that a reader refuses a foreign file, another version or a
//! template it does not have before it unpacks anything; the digest comes last so that it is
//! computed while the archive is streamed. Nothing read is trusted before the digest matched:
//! an importer unpacks into staging and publishes only then.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

pub const MAGIC: &[u8] = b"sandbank-snapshot-archive\n";
/// The manifest's `format`.
pub const FORMAT: &str = "sandbank-snapshot-archive";
pub const FORMAT_VERSION: u32 = 1;
/// The media type of the file (REST).
pub const MEDIA_TYPE: &str = "application/zstd";
/// The longest manifest a reader takes.
const MAX_MANIFEST: usize = 1 << 20;
/// The most layers an archive may carry.
pub const MAX_LAYERS: usize = 256;
/// The longest chunk a writer emits (and a reader takes).
const MAX_CHUNK: usize = 1 << 20;
/// The zstd level: the `zstd` tool's default.
const LEVEL: i32 = 3;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const KIND_MANIFEST: u8 = b'M';
const KIND_LAYER: u8 = b'L';
const KIND_DIGEST: u8 = b'D';

/// What an archive says of itself and of the snapshot in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    pub snapshot: ManifestSnapshot,
    /// The template at the bottom of the layer chain (`base`, or `oci-<hex>`).
    pub template: String,
    /// The image that template was on the exporting server (for `base`: its recipe's ID); an
    /// importer with another one refuses the snapshot, whose layers were made over it.
    pub base_image: String,
    /// How many layer sections follow (topmost first).
    pub layers: usize,
    /// The server that wrote it (`sandbank <version>`).
    pub exporter: String,
    /// Unix nanoseconds.
    pub exported_at: i64,
}

/// The snapshot's record, as the exporting server had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSnapshot {
    pub id: String,
    pub names: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// The sandbox it was taken from.
    pub origin_sandbox: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub size_bytes: u64,
    /// What the archive carries: always `filesystem` (the images of a full snapshot's processes
    /// stay behind: they hold host pids and the exporting machine's kernel state).
    pub mode: String,
    /// What the snapshot was on the exporting server (`full` or `filesystem`).
    pub source_mode: String,
}

/// Why an archive was refused (or could not be written).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a sandbank snapshot archive: {0}")]
    Foreign(String),
    #[error("snapshot archive format version {found} is not supported (this server reads version {FORMAT_VERSION})")]
    Version { found: u64 },
    #[error("the snapshot archive is truncated: {0}")]
    Truncated(String),
    #[error("the snapshot archive is corrupted: {0}")]
    Corrupted(String),
    #[error("the snapshot archive was made over template {0:?}, which this server does not have")]
    TemplateMissing(String),
    #[error(
        "the snapshot archive's layers were made over base image {archive:?}; this server's base image is {here:?}"
    )]
    BaseImageMismatch { archive: String, here: String },
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Engine(#[from] crate::EngineError),
}

impl ArchiveError {
    /// Whether the archive itself is at fault (a 400), not the server.
    pub fn is_bad_archive(&self) -> bool {
        matches!(
            self,
            ArchiveError::Foreign(_)
                | ArchiveError::Version { .. }
                | ArchiveError::Truncated(_)
                | ArchiveError::Corrupted(_)
                | ArchiveError::TemplateMissing(_)
                | ArchiveError::BaseImageMismatch { .. }
        )
    }

    pub fn io(step: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
        let step = step.into();
        move |source| ArchiveError::Io { step, source }
    }

    /// The archive error an I/O error of the reading side stands for: one of ours that went
    /// through `io::Error` (a tar child reads the sections), else the decompressor's or the
    /// upload's.
    pub fn from_read(e: io::Error) -> ArchiveError {
        if e.get_ref().is_some_and(|inner| inner.is::<ArchiveError>()) {
            return *e.into_inner().expect("checked").downcast::<ArchiveError>().expect("checked");
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::Truncated(e.to_string()),
            _ => ArchiveError::Corrupted(e.to_string()),
        }
    }
}

fn into_io(e: ArchiveError) -> io::Error {
    io::Error::other(e)
}

/// Writes an archive: [`ArchiveWriter::new`] (magic and manifest), a [`ArchiveWriter::layer`]
/// per layer, [`ArchiveWriter::finish`] (digest, end of the frame).
pub struct ArchiveWriter<W: Write> {
    out: zstd::stream::write::Encoder<'static, W>,
    hasher: Sha256,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter").finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, manifest: &Manifest) -> io::Result<Self> {
        let mut out = zstd::stream::write::Encoder::new(out, LEVEL)?;
        out.include_checksum(true)?;
        let mut w = Self { out, hasher: Sha256::new() };
        w.put(MAGIC)?;
        let json = serde_json::to_vec(manifest).map_err(io::Error::other)?;
        let mut section = w.section(KIND_MANIFEST)?;
        section.write_all(&json)?;
        section.finish()?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    fn section(&mut self, kind: u8) -> io::Result<SectionWriter<'_, W>> {
        self.put(&[kind])?;
        Ok(SectionWriter { w: self })
    }

    /// The next layer's section: write its tar into it, then [`SectionWriter::finish`].
    pub fn layer(&mut self) -> io::Result<SectionWriter<'_, W>> {
        self.section(KIND_LAYER)
    }

    /// Writes the digest and ends the frame; returns the output and the digest (hex).
    pub fn finish(mut self) -> io::Result<(W, String)> {
        self.put(&[KIND_DIGEST])?;
        let digest = hex(&self.hasher.finalize_reset());
        let json = serde_json::to_vec(&serde_json::json!({ "sha256": digest })).map_err(io::Error::other)?;
        // Not hashed: the digest covers what comes before it.
        self.out.write_all(&(json.len() as u32).to_be_bytes())?;
        self.out.write_all(&json)?;
        self.out.write_all(&0u32.to_be_bytes())?;
        let out = self.out.finish()?;
        Ok((out, digest))
    }
}

/// One section being written: chunks of what is written to it.
pub struct SectionWriter<'a, W: Write> {
    w: &'a mut ArchiveWriter<W>,
}

impl<W: Write> SectionWriter<'_, W> {
    pub fn finish(self) -> io::Result<()> {
        self.w.put(&0u32.to_be_bytes())
    }
}

impl<W: Write> Write for SectionWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(MAX_CHUNK);
        self.w.put(&(n as u32).to_be_bytes())?;
        self.w.put(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.out.flush()
    }
}

/// Reads an archive: [`ArchiveReader::open`] (magic and manifest, checked), then
/// [`ArchiveReader::next_layer`] until it says there are no more, which checks the digest.
pub struct ArchiveReader<R: Read> {
    input: zstd::stream::read::Decoder<'static, io::BufReader<io::Chain<io::Cursor<[u8; 4]>, R>>>,
    hasher: Sha256,
    /// In a layer section: what is left of its current chunk (`None`: the section ended).
    chunk_left: Option<usize>,
    layers_seen: usize,
    layers: usize,
}

impl<R: Read> std::fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader").field("layers_seen", &self.layers_seen).finish_non_exhaustive()
    }
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks the magic and the manifest (format and version).
    pub fn open(mut input: R) -> Result<(Self, Manifest), ArchiveError> {
        // A zstd frame's magic first: without it the file is something else; with it, a file
        // that ends before the manifest is a truncated archive.
        let mut head = [0u8; 4];
        input.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::Foreign("too short to be one".into()),
            _ => ArchiveError::Io { step: "read the archive".into(), source: e },
        })?;
        if head != ZSTD_MAGIC {
            return Err(ArchiveError::Foreign("not zstd-compressed".into()));
        }
        let input = zstd::stream::read::Decoder::new(io::Cursor::new(head).chain(input))
            .map_err(ArchiveError::io("start decompressing"))?;
        let mut r = Self { input, hasher: Sha256::new(), chunk_left: None, layers_seen: 0, layers: 0 };
        let mut magic = [0u8; MAGIC.len()];
        let mut got = 0;
        while got < magic.len() {
            match r.input.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // What came so far is the magic's beginning: the file was cut short.
                Err(e) if magic[..got] == MAGIC[..got] => return Err(ArchiveError::from_read(e)),
                Err(e) => return Err(ArchiveError::Foreign(format!("damaged or something else ({e})"))),
            }
        }
        if got < magic.len() && magic[..got] == MAGIC[..got] && got > 0 {
            return Err(ArchiveError::Truncated("it ends before its manifest".into()));
        }
        if magic != MAGIC {
            return Err(ArchiveError::Foreign("it does not begin with the archive's magic".into()));
        }
        r.hasher.update(magic);
        if r.kind()? != KIND_MANIFEST {
            return Err(ArchiveError::Foreign("no manifest after the magic".into()));
        }
        let json = r.whole_section(MAX_MANIFEST, true)?;
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| ArchiveError::Corrupted(format!("manifest: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ArchiveError::Foreign(format!("its manifest's format is not {FORMAT:?}")));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(found) => return Err(ArchiveError::Version { found }),
            None => return Err(ArchiveError::Corrupted("manifest: no version".into())),
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| ArchiveError::Corrupted(format!("manifest: {e}")))?;
        if manifest.layers == 0 || manifest.layers > MAX_LAYERS {
            return Err(ArchiveError::Corrupted(format!("manifest: {} layers", manifest.layers)));
        }
        r.layers = manifest.layers;
        Ok((r, manifest))
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::Truncated("it ends in the middle".into()),
            _ => ArchiveError::from_read(e),
        })?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn kind(&mut self) -> Result<u8, ArchiveError> {
        let mut kind = [0u8; 1];
        self.read_hashed(&mut kind)?;
        Ok(kind[0])
    }

    fn chunk_len(&mut self, hashed: bool) -> Result<usize, ArchiveError> {
        let mut len = [0u8; 4];
        if hashed {
            self.read_hashed(&mut len)?;
        } else {
            self.input.read_exact(&mut len).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ArchiveError::Truncated("it ends in its digest".into()),
                _ => ArchiveError::from_read(e),
            })?;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_CHUNK {
            return Err(ArchiveError::Corrupted(format!("a chunk of {len} bytes")));
        }
        Ok(len)
    }

    /// A whole (small) section, at most `max` bytes.
    fn whole_section(&mut self, max: usize, hashed: bool) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        loop {
            let len = self.chunk_len(hashed)?;
            if len == 0 {
                return Ok(out);
            }
            if out.len() + len > max {
                return Err(ArchiveError::Corrupted(format!("a section longer than {max} bytes")));
            }
            let start = out.len();
            out.resize(start + len, 0);
            if hashed {
                self.read_hashed(&mut out[start..])?;
            } else {
                self.input.read_exact(&mut out[start..]).map_err(ArchiveError::from_read)?;
            }
        }
    }

    /// The next layer's tar (topmost first), to read to its end; `None` once all were read
    /// and the digest matched (and nothing follows it).
    pub fn next_layer(&mut self) -> Result<Option<LayerReader<'_, R>>, ArchiveError> {
        if let Some(left) = self.chunk_left {
            return Err(ArchiveError::Io {
                step: "read the archive".into(),
                source: io::Error::other(format!("the previous layer was not read to its end ({left} bytes left)")),
            });
        }
        match self.kind()? {
            KIND_LAYER if self.layers_seen < self.layers => {
                self.layers_seen += 1;
                self.chunk_left = Some(0);
                Ok(Some(LayerReader { r: self }))
            }
            KIND_LAYER => {
                Err(ArchiveError::Corrupted(format!("more layers than the {} its manifest says", self.layers)))
            }
            KIND_DIGEST if self.layers_seen < self.layers => Err(ArchiveError::Corrupted(format!(
                "{} layers where its manifest says {}",
                self.layers_seen, self.layers
            ))),
            KIND_DIGEST => {
                let computed = hex(&self.hasher.finalize_reset());
                let json = self.whole_section(4096, false)?;
                let value: serde_json::Value =
                    serde_json::from_slice(&json).map_err(|e| ArchiveError::Corrupted(format!("digest: {e}")))?;
                let stated = value.get("sha256").and_then(|d| d.as_str()).unwrap_or_default();
                if stated != computed {
                    return Err(ArchiveError::Corrupted(format!(
                        "content digest mismatch: the archive says sha256 {stated}, its content is {computed}"
                    )));
                }
                // The end of the frame: its checksum is read (and checked) here.
                let mut rest = [0u8; 1];
                match self.input.read(&mut rest) {
                    Ok(0) => Ok(None),
                    Ok(_) => Err(ArchiveError::Corrupted("data after the digest".into())),
                    Err(e) => Err(ArchiveError::from_read(e)),
                }
            }
            other => Err(ArchiveError::Corrupted(format!("unknown section kind {other:#04x}"))),
        }
    }
}

/// A layer's tar, as it is read (its reads fail with an [`ArchiveError`] inside the
/// `io::Error`: see [`ArchiveError::from_read`]).
pub struct LayerReader<'a, R: Read> {
    r: &'a mut ArchiveReader<R>,
}

impl<R: Read> Read for LayerReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut left) = self.r.chunk_left else { return Ok(0) };
        if buf.is_empty() {
            return Ok(0);
        }
        if left == 0 {
            left = self.r.chunk_len(true).map_err(into_io)?;
            if left == 0 {
                self.r.chunk_left = None;
                return Ok(0);
            }
        }
        let want = left.min(buf.len());
        let n = match self.r.input.read(&mut buf[..want]) {
            Ok(0) => return Err(into_io(ArchiveError::Truncated("it ends in the middle of a layer".into()))),
            Ok(n) => n,
            Err(e) => return Err(into_io(ArchiveError::from_read(e))),
        };
        self.r.hasher.update(&buf[..n]);
        self.r.chunk_left = Some(left - n);
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: usize) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            snapshot: ManifestSnapshot {
                id: "abc".into(),
                names: vec!["prod".into()],
                metadata: BTreeMap::from([("k".into(), "v".into())]),
                origin_sandbox: "sb".into(),
                created_at: 7,
                size_bytes: 3,
                mode: "filesystem".into(),
                source_mode: "full".into(),
            },
            template: "base".into(),
            base_image: "debian-x".into(),
            layers,
            exporter: "test".into(),
            exported_at: 9,
        }
    }

    fn archive(m: &Manifest, layers: &[&[u8]]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), m).unwrap();
        for l in layers {
            let mut s = w.layer().unwrap();
            // Small writes: several chunks per layer.
            for part in l.chunks(3) {
                s.write_all(part).unwrap();
            }
            s.finish().unwrap();
        }
        w.finish().unwrap().0
    }

    /// The manifest and every layer back, or the first error.
    fn read_all(bytes: &[u8]) -> Result<(Manifest, Vec<Vec<u8>>), ArchiveError> {
        let (mut r, m) = ArchiveReader::open(bytes)?;
        let mut layers = Vec::new();
        while let Some(mut l) = r.next_layer()? {
            let mut v = Vec::new();
            l.read_to_end(&mut v).map_err(ArchiveError::from_read)?;
            layers.push(v);
        }
        Ok((m, layers))
    }

    #[test]
    fn round_trip() {
        let big = vec![42u8; 3 * MAX_CHUNK + 5];
        let m = manifest(3);
        let bytes = archive(&m, &[b"top layer", b"", &big]);
        let (back, layers) = read_all(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(layers, vec![b"top layer".to_vec(), vec![], big]);
    }

    #[test]
    fn the_digest_is_stable_and_covers_the_content() {
        let m = manifest(1);
        let (_, a) = ArchiveWriter::new(Vec::new(), &m)
            .map(|mut w| {
                let mut s = w.layer().unwrap();
                s.write_all(b"x").unwrap();
                s.finish().unwrap();
                w
            })
            .unwrap()
            .finish()
            .unwrap();
        let (_, b) = ArchiveWriter::new(Vec::new(), &m)
            .map(|mut w| {
                let mut s = w.layer().unwrap();
                s.write_all(b"y").unwrap();
                s.finish().unwrap();
                w
            })
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn truncated_is_refused() {
        let bytes = archive(&manifest(1), &[&vec![7u8; 100_000]]);
        for cut in [bytes.len() - 1, bytes.len() / 2, 40] {
            let e = read_all(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, ArchiveError::Truncated(_)), "cut at {cut}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        // Incompressible content: a flip lands in literal bytes as well as in headers.
        let mut noise = vec![0u8; 200_000];
        let mut x: u32 = 1;
        for b in noise.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        let bytes = archive(&manifest(1), &[&noise]);
        for at in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let e = read_all(&bad).unwrap_err();
            assert!(
                matches!(e, ArchiveError::Corrupted(_) | ArchiveError::Truncated(_) | ArchiveError::Foreign(_)),
                "flip at {at}: {e}"
            );
        }
    }

    #[test]
    fn a_digest_that_does_not_match_is_refused() {
        // A well-formed frame whose content was changed before compression: zstd's checksum
        // is right, the digest is not.
        let good = archive(&manifest(1), &[b"hello"]);
        let mut plain = zstd::decode_all(&good[..]).unwrap();
        // The layer's first chunk ("hel": the test writes 3 bytes at a time).
        let at = plain.windows(3).position(|w| w == b"hel").unwrap();
        plain[at] = b'j';
        let bad = zstd::encode_all(&plain[..], 3).unwrap();
        let e = read_all(&bad).unwrap_err();
        assert!(e.to_string().contains("content digest mismatch"), "{e}");
    }

    #[test]
    fn foreign_files_are_refused() {
        let e = read_all(b"PK\x03\x04 a zip file, say").unwrap_err();
        assert!(matches!(e, ArchiveError::Foreign(_)), "{e}");
        let e = read_all(&zstd::encode_all(&b"some other zstd content, long enough"[..], 3).unwrap()).unwrap_err();
        assert!(matches!(e, ArchiveError::Foreign(_)), "{e}");
        let e = read_all(&zstd::encode_all(&b"short"[..], 3).unwrap()).unwrap_err();
        assert!(matches!(e, ArchiveError::Foreign(_)), "{e}");
        assert!(e.to_string().contains("not a sandbank snapshot archive"), "{e}");
    }

    #[test]
    fn another_version_is_refused() {
        let mut m = manifest(1);
        m.version = 99;
        let e = read_all(&archive(&m, &[b"x"])).unwrap_err();
        assert!(matches!(e, ArchiveError::Version { found: 99 }), "{e}");
        assert!(e.to_string().contains("version 99"), "{e}");
    }

    #[test]
    fn fewer_layers_than_the_manifest_says_is_refused() {
        let e = read_all(&archive(&manifest(2), &[b"x"])).unwrap_err();
        assert!(e.to_string().contains("1 layers where its manifest says 2"), "{e}");
    }
}
