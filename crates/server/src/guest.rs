//! `sandbank guest`: enter the sandbox, then serve envd as its PID 1.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    let init = match sandbank_guest::init::enter() {
        Ok(init) => init,
        Err(e) => {
            eprintln!("sandbank guest: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match runtime.block_on(crate::envd::serve(init)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbank guest: envd: {e}");
            ExitCode::from(1)
        }
    }
}
