//! Templates: the read-only layers a sandbox starts from.
//!
//! `base` is the Debian image of [`crate::base_image`]: its root as the lowest layer of a
//! sandbox's `/`, and its `/usr` as the lowest of its `/usr` (a sandbox's `/usr` is an overlay of
//! its own, under envd's layer).

use crate::base_image::BaseImage;
use std::io;
use std::path::{Path, PathBuf};

pub const BASE: &str = "base";

/// The lower layers of a template, each one for `/` and one for `/usr`, topmost first.
#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    pub root_lowers: Vec<PathBuf>,
    pub usr_lowers: Vec<PathBuf>,
}

impl Template {
    /// The template made of an image's root alone.
    pub fn of_image(name: &str, image: &BaseImage) -> Self {
        Self::of_rootfs(name, image.rootfs())
    }

    /// The template made of the system at `root` alone.
    pub fn of_rootfs(name: &str, root: PathBuf) -> Self {
        Self { name: name.into(), usr_lowers: vec![root.join("usr")], root_lowers: vec![root] }
    }
}

/// `rm -rf`, quiet when the path does not exist: [`crate::tree::remove_tree`], which any depth
/// survives and no symlink leads astray.
pub fn remove_all(path: &Path) -> io::Result<()> {
    crate::tree::remove_tree(path)
}
