//! Arguments and plumbing every subcommand shares.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Hide progress bars and status lines (bars are also hidden when stderr is not a terminal); errors still print.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// CPU threads for libtorch and the analysis (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
}

impl GlobalArgs {
    /// A progress bar on stderr, hidden with `--quiet` or when stderr is not a terminal.
    pub fn progress(&self, len: u64, template: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if self.quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Prints an error as one paragraph and picks the exit code: a broken pipe is success
/// (the reader went away), everything else is a usage or input error (2).
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
        }
    }
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    eprintln!("{msg}");
    ExitCode::from(2)
}
