//! `ward completions SHELL` and `ward manpage`: generated from the same
//! clap definitions as the command itself, so they never drift from it.

use clap::{Args, CommandFactory as _};

use super::Cli;

/// `ward completions`
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// Prints the completion script for the shell.
    pub(crate) fn exec(&self) {
        let mut cmd = Cli::command();
        clap_complete::generate(self.shell, &mut cmd, "ward", &mut std::io::stdout());
    }
}

/// Prints the `ward(1)` man page (roff).
pub(crate) fn manpage() -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render(&mut std::io::stdout())?;
    Ok(())
}
