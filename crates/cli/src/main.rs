//! `collapse-probe`: frequency-collapse and marginal-trap diagnostics for masked diffusion LMs.
//!
//! This binary runs the subcommands that never run a model, without loading libtorch, and hands
//! every other command line to `collapse-probe-model` beside it (see the library's
//! documentation). It only parses arguments, shows progress and maps errors to exit codes; the
//! work happens in the library crates (see ARCHITECTURE.md).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use collapse_probe::{common, ModelFreeCommand, MODEL_BINARY};

/// Diagnose frequency collapse and the marginal trap in masked diffusion language models.
#[derive(Debug, Parser)]
#[command(name = "collapse-probe", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: ModelFreeCommand,
}

fn main() -> ExitCode {
    collapse_probe::allocator::configure();
    let args: Vec<OsString> = std::env::args_os().collect();
    let version = matches!(args.get(1..), Some([v]) if v == "--version" || v == "-V");
    if !version && !subcommand_name(&args).is_some_and(ModelFreeCommand::has) {
        // Model subcommands, the top-level help, and usage errors without a subcommand: the
        // model binary knows them all. (Both binaries have one version.)
        return hand_over(&args);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, usage errors with exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command.run(&cli.global) {
        Ok(code) => code,
        Err(err) => common::report_error(&err),
    }
}

/// The subcommand named on the command line: the first argument that is neither a global
/// option nor such an option's value.
fn subcommand_name(args: &[OsString]) -> Option<&str> {
    let cli = Cli::command();
    let takes_value = |option: &str| {
        cli.get_arguments().any(|a| {
            a.get_action().takes_values()
                && (option.strip_prefix("--") == a.get_long()
                    || option.strip_prefix('-').and_then(|s| s.chars().next()) == a.get_short()
                        && option.len() == 2)
        })
    };
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if !arg.starts_with('-') {
            return Some(arg);
        }
        if takes_value(arg) {
            rest.next();
        }
    }
    None
}

/// Replaces this process with the model binary, given the same arguments.
fn hand_over(args: &[OsString]) -> ExitCode {
    let binary = match std::env::current_exe() {
        Ok(me) => me.with_file_name(format!("{MODEL_BINARY}{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => {
            eprintln!("error: cannot find collapse-probe's own path to run {MODEL_BINARY}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut command = std::process::Command::new(&binary);
    command.args(&args[1..]);
    #[cfg(unix)]
    let outcome = {
        use std::os::unix::process::CommandExt;
        // Only returns on failure. The process keeps its PID, so signals and the lock files
        // that name it reach the model binary.
        Err::<ExitCode, _>(command.exec())
    };
    #[cfg(not(unix))]
    let outcome = command
        .status()
        .map(|status| ExitCode::from(status.code().map_or(2, |c| u8::try_from(c).unwrap_or(2))));
    outcome.unwrap_or_else(|e| {
        eprintln!(
            "error: cannot run {}: {e} (it is installed beside collapse-probe, which runs \
             every subcommand that loads a model through it; reinstall both)",
            binary.display()
        );
        ExitCode::from(2)
    })
}
