//! Config files: a game server config written as JSON, YAML or TOML, read by `manman config
//! create|update -f FILE` and printed by `manman config show --format …`, so that show → edit →
//! update round-trips. Unknown fields are refused with the line they are on (a typo must not
//! silently fall back to a default).

use anyhow::{Context, bail};
use manman_core::config::{ConfigSpec, RestartPolicy, SteamOptions, StopPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The formats a config file may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// TOML.
    Toml,
}

impl FileFormat {
    /// The format a file's extension names (`.json`, `.yaml`/`.yml`, `.toml`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "json" => Some(Self::Json),
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// A config as a file holds it: every field of [`ConfigSpec`], each optional (a missing field
/// takes its default; `name` and `executable` may come from the command line or, for an
/// update, from the stored config). Unknown fields are refused, here and in the nested tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// Unique per game.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The program, relative to the game's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// Arguments, passed as they are (no shell).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the game's directory (absent: the game's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// A regex on console output; the server is `running` when a line matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_pattern: Option<String>,
    /// Seconds a server with a ready pattern may take to print it (0: for ever).
    pub ready_timeout_s: u32,
    /// The game's default config.
    pub is_default: bool,
    /// Shown in listings.
    pub is_visible: bool,
    /// Whether an exit with code 0 nobody asked for counts as `complete`.
    pub clean_exit_is_complete: bool,
    /// How to stop it gracefully.
    pub stop: StopPolicy,
    /// What to do when it exits on its own.
    pub restart: RestartPolicy,
    /// SteamCMD options, for `steam` games.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steam: Option<SteamOptions>,
}

impl Default for ConfigFile {
    /// The defaults of [`ConfigSpec::new`], without a name or an executable.
    fn default() -> Self {
        let mut file = Self::from(ConfigSpec::new("", ""));
        file.name = None;
        file.executable = None;
        file
    }
}

impl From<ConfigSpec> for ConfigFile {
    fn from(spec: ConfigSpec) -> Self {
        // Every field named: a field added to the spec must be added here.
        let ConfigSpec {
            name,
            is_default,
            is_visible,
            executable,
            args,
            env,
            working_dir,
            stop,
            ready_pattern,
            ready_timeout_s,
            restart,
            clean_exit_is_complete,
            steam,
        } = spec;
        Self {
            name: Some(name),
            executable: Some(executable),
            args,
            env,
            working_dir,
            ready_pattern,
            ready_timeout_s,
            is_default,
            is_visible,
            clean_exit_is_complete,
            stop,
            restart,
            steam,
        }
    }
}

impl ConfigFile {
    /// The spec this file (with whatever flags were applied to it) describes; the name and the
    /// executable must be known by now.
    pub fn into_spec(self) -> anyhow::Result<ConfigSpec> {
        let name = self.name.context(
            "the config has no name: give it as an argument, --name or `name` in the file",
        )?;
        let executable = self.executable.context(
            "the config has no executable: give --executable or `executable` in the file",
        )?;
        Ok(ConfigSpec {
            name,
            is_default: self.is_default,
            is_visible: self.is_visible,
            executable,
            args: self.args,
            env: self.env,
            working_dir: self.working_dir,
            stop: self.stop,
            ready_pattern: self.ready_pattern,
            ready_timeout_s: self.ready_timeout_s,
            restart: self.restart,
            clean_exit_is_complete: self.clean_exit_is_complete,
            steam: self.steam,
        })
    }

    /// Reads a config file written in `format`; `origin` (the file's name) starts any error,
    /// which names the line (and column) at fault.
    pub fn parse(text: &str, format: FileFormat, origin: &str) -> anyhow::Result<Self> {
        let parsed = match format {
            FileFormat::Json => serde_json::from_str(text).map_err(anyhow::Error::from),
            FileFormat::Yaml => serde_yaml_ng::with::singleton_map_recursive::deserialize(
                serde_yaml_ng::Deserializer::from_str(text),
            )
            .map_err(anyhow::Error::from),
            // TOML's error is several lines: the position, the line quoted, the reason.
            FileFormat::Toml => toml::from_str(text).map_err(|e| anyhow::anyhow!("\n{e}")),
        };
        parsed.with_context(|| format!("{origin} is not a valid config"))
    }

    /// Reads the config file at `path` (`-`: stdin), in `format` or else the one its extension
    /// names.
    pub fn read(path: &Path, format: Option<FileFormat>) -> anyhow::Result<Self> {
        let format = match format.or_else(|| FileFormat::from_path(path)) {
            Some(format) => format,
            None if path == Path::new("-") => bail!("reading a config from stdin needs --format"),
            None => bail!(
                "cannot tell the format of {}: name it .json, .yaml, .yml or .toml, or pass --format",
                path.display()
            ),
        };
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("could not read stdin")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?
        };
        let origin = if path == Path::new("-") {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        Self::parse(&text, format, &origin)
    }

    /// The file as `format` writes it (what [`ConfigFile::parse`] reads back the same).
    pub fn render(&self, format: FileFormat) -> anyhow::Result<String> {
        Ok(match format {
            FileFormat::Json => serde_json::to_string_pretty(self)? + "\n",
            FileFormat::Yaml => {
                let mut out = Vec::new();
                let mut serializer = serde_yaml_ng::Serializer::new(&mut out);
                serde_yaml_ng::with::singleton_map_recursive::serialize(self, &mut serializer)?;
                String::from_utf8(out).context("YAML output was not UTF-8")?
            }
            FileFormat::Toml => toml::to_string(self)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manman_core::config::{RestartMode, SteamLogin, StopSignal};

    /// A spec with every field away from its default.
    fn full_spec() -> ConfigSpec {
        let mut spec = ConfigSpec::new("main", "bin/server");
        spec.is_default = true;
        spec.is_visible = false;
        spec.args = vec!["-port".into(), "27015".into(), "two words".into()];
        spec.env.insert("GAME_MODE".into(), "coop".into());
        spec.working_dir = Some("bin".into());
        spec.stop = StopPolicy {
            stdin_line: Some("quit".into()),
            signal: StopSignal::Int,
            timeout_s: 12,
            signal_grace_s: 3,
        };
        spec.ready_pattern = Some("^Server (is )?ready$".into());
        spec.ready_timeout_s = 90;
        spec.restart = RestartPolicy {
            mode: RestartMode::OnCrash,
            max_restarts: 2,
            window_s: 120,
            backoff_initial_ms: 500,
            backoff_max_ms: 4_000,
        };
        spec.clean_exit_is_complete = false;
        spec.steam = Some(SteamOptions {
            branch: Some("beta".into()),
            branch_password_secret: Some("beta-pw".into()),
            validate: true,
            login: SteamLogin::Named("ops".into()),
        });
        spec
    }

    #[test]
    fn every_format_round_trips_every_field() {
        for spec in [full_spec(), ConfigSpec::new("plain", "server")] {
            for format in [FileFormat::Json, FileFormat::Yaml, FileFormat::Toml] {
                let text = ConfigFile::from(spec.clone())
                    .render(format)
                    .expect("render");
                let back = ConfigFile::parse(&text, format, "test")
                    .unwrap_or_else(|e| panic!("{format:?}: {e:#}\n{text}"))
                    .into_spec()
                    .expect("spec");
                assert_eq!(back, spec, "{format:?}:\n{text}");
            }
        }
    }

    #[test]
    fn missing_fields_take_the_defaults() {
        let file = ConfigFile::parse("executable = \"srv\"\n", FileFormat::Toml, "t").expect("ok");
        let mut file = file;
        file.name = Some("main".into());
        assert_eq!(
            file.into_spec().expect("spec"),
            ConfigSpec::new("main", "srv")
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let json = "{\n  \"name\": \"main\",\n  \"stop_signal\": \"INT\"\n}\n";
        let yaml = "name: main\nexecutable: srv\nstop:\n  signall: INT\n";
        let toml = "name = \"main\"\n\n[restart]\nmod = \"always\"\n";
        for (text, format, line, field) in [
            (json, FileFormat::Json, "line 3", "stop_signal"),
            (yaml, FileFormat::Yaml, "line 4", "signall"),
            (toml, FileFormat::Toml, "line 4", "mod"),
        ] {
            let error = format!(
                "{:#}",
                ConfigFile::parse(text, format, "cfg").expect_err("refused")
            );
            assert!(error.starts_with("cfg is not a valid config"), "{error}");
            assert!(error.contains(line), "{format:?} names {line}: {error}");
            assert!(error.contains(field), "{format:?} names {field}: {error}");
        }
    }

    #[test]
    fn a_format_is_known_by_its_extension() {
        assert_eq!(
            FileFormat::from_path(Path::new("a/b.YML")),
            Some(FileFormat::Yaml)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("c.toml")),
            Some(FileFormat::Toml)
        );
        assert_eq!(FileFormat::from_path(Path::new("c.txt")), None);
        assert_eq!(FileFormat::from_path(Path::new("-")), None);
    }
}
