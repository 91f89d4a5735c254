//! `ward plugin`: inspect plugins.

use std::path::{Path, PathBuf};

use clap::Subcommand;

/// `ward plugin ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Validate a component against the `job-plugin` world; print its
    /// digest, imports and exports. Fails if Ward could not run it.
    Check {
        /// The component file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl PluginCommand {
    /// Runs one `ward plugin` command.
    pub(crate) fn exec(self) -> anyhow::Result<()> {
        match self {
            PluginCommand::Check { file, json } => check(&file, json),
        }
    }
}

fn check(file: &Path, json: bool) -> anyhow::Result<()> {
    if let Err(why) = crate::config::check_plugin_file(file) {
        anyhow::bail!("{} {why}", file.display());
    }
    let runtime = crate::runtime::Runtime::new(&crate::runtime::RuntimeSpec::single(None))?;
    let info = runtime.inspect(file)?;
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": info.digest,
            "size": info.size,
            "imports": info.imports,
            "exports": info.exports,
            "world": info.world.version(),
            "ok": info.fits.is_ok(),
            "error": info.fits.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", file.display());
        println!("  sha256   {}", info.digest);
        println!("  size     {} bytes", info.size);
        println!("  exports  {}", info.exports.join(", "));
        println!("  imports");
        for import in &info.imports {
            println!("    {import}");
        }
    }
    match info.fits {
        Ok(()) => {
            if !json {
                println!(
                    "  ok: fits the ward:plugin/job-plugin@{} world",
                    info.world.version()
                );
            }
            Ok(())
        }
        Err(why) => anyhow::bail!(
            "{} cannot run under Ward: {why}\nWard provides ward:plugin/host and ward:plugin/jobs (0.1.0 or 0.2.0), wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets (all denied) and wasi:http (allow-listed); the plugin must export `handle`",
            file.display()
        ),
    }
}
