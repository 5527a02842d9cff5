//! `sandbank base-image`: builds the base template's Debian image where `serve` would (the same
//! `--data-dir`/`--images-dir`), so that a first server start (or the SDK's first sandbox) does
//! not wait for it. Prints the image's directory.

use sandbank_engine::base_image;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn main(data_dir: Option<PathBuf>, images_dir: Option<PathBuf>) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    let images = match (images_dir, data_dir) {
        (Some(dir), _) => dir,
        (None, Some(data)) => data.join("images"),
        (None, None) => match crate::serve::default_data_dir() {
            Ok(data) => data.join("images"),
            Err(e) => {
                eprintln!("sandbank: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    match base_image::ensure(&images) {
        Ok(image) => {
            println!("{}", image.dir().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbank: {e}");
            ExitCode::FAILURE
        }
    }
}
