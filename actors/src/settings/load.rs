//! Loading the settings: which configuration files apply, in which order, and a strict check of
//! every value against `docs/configuration.md`.
//!
//! Files are read as TOML and checked one by one against the built-in defaults (which list every
//! key with its type), so an error names the file that holds the bad value, the key and what was
//! expected. Nothing is converted: `port = "47480"` (text), `enabled = "yes"` and `name = 42` are
//! refused, where a lenient loader would quietly turn them into a port, a boolean and a name.
//! Environment variables (`PGPCHAT__SECTION__KEY`) and command-line values are text by nature:
//! they are parsed as the key's type, strictly too.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Settings, SettingsError};

/// The profiles shipped in `config/`, built into the binary so `--profile alice` works from any
/// directory (a file of the same name in `./config/` or the user's config dir comes first).
const BUILT_IN_PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../../../config/default.toml")),
    ("alice", include_str!("../../../config/alice.toml")),
    ("bob", include_str!("../../../config/bob.toml")),
];

/// The environment variable naming a configuration file used when neither `--profile` nor
/// `--config` is given.
pub const CONFIG_ENV: &str = "PGPCHAT_CONFIG";

/// Prefix of the environment variables that set one key (`PGPCHAT__DISCOVERY__PORT`).
const ENV_PREFIX: &str = "PGPCHAT__";

/// Longest quotation of a bad value in an error (a value may be a whole pasted file).
const MAX_QUOTED_CHARS: usize = 40;

/// Where a value came from, as an error names it.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    BuiltIn(String),
    Env(String),
    CommandLine(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn(name) => write!(f, "built-in profile '{name}'"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::CommandLine(key) => write!(f, "command line ({key})"),
        }
    }
}

/// The user's configuration directory for pgpchat: `$XDG_CONFIG_HOME/pgpchat`, else
/// `$HOME/.config/pgpchat` (read from `env`, so tests choose it).
fn user_config_dir(env: &HashMap<String, String>) -> Option<PathBuf> {
    let base = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env.get("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(h).join(".config"))
        })?;
    Some(base.join("pgpchat"))
}

/// Where to look for `NAME.toml` profiles: `./config/`, then the user's config dir; after them, the
/// built-in `default`, `alice` and `bob`.
pub fn profile_dirs_in(env: &HashMap<String, String>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("config")];
    dirs.extend(user_config_dir(env));
    dirs
}

/// The configuration files that apply, lowest first:
/// - `--profile NAME` and/or `--config FILE` (the file after the profile, so it wins);
/// - else `PGPCHAT_CONFIG`, else `$XDG_CONFIG_HOME/pgpchat/config.toml` when it exists;
/// - else none (the built-in defaults).
fn sources(
    profile: Option<&str>,
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Vec<(Origin, String)>, SettingsError> {
    let mut out = Vec::new();
    if profile.is_none() && file.is_none() {
        if let Some(f) = env.get(CONFIG_ENV).filter(|f| !f.is_empty()) {
            let f = PathBuf::from(f);
            if !f.is_file() {
                return Err(SettingsError::Invalid(format!(
                    "configuration file {} (from {CONFIG_ENV}) not found",
                    f.display()
                )));
            }
            out.push(read(&f)?);
        } else if let Some(f) = user_config_dir(env).map(|d| d.join("config.toml")) {
            if f.is_file() {
                out.push(read(&f)?);
            }
        }
    }
    if let Some(name) = profile {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(SettingsError::Invalid(format!(
                "profile name '{name}' must be a plain name"
            )));
        }
        let dirs = profile_dirs_in(env);
        let found = dirs
            .iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.is_file());
        match found {
            Some(p) => out.push(read(&p)?),
            None => match BUILT_IN_PROFILES.iter().find(|(n, _)| *n == name) {
                Some((n, text)) => out.push((Origin::BuiltIn((*n).into()), (*text).into())),
                None => {
                    return Err(SettingsError::ProfileNotFound(
                        name.into(),
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .chain(std::iter::once(format!(
                                "built in: {}",
                                BUILT_IN_PROFILES
                                    .iter()
                                    .map(|(n, _)| *n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ))
                }
            },
        }
    }
    if let Some(f) = file {
        if !f.is_file() {
            return Err(SettingsError::Invalid(format!(
                "configuration file {} not found",
                f.display()
            )));
        }
        out.push(read(f)?);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<(Origin, String), SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    Ok((Origin::File(path.to_path_buf()), text))
}

/// Load the layers (see [`Settings::load`]).
pub(super) fn load(
    profile: Option<&str>,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, String)],
) -> Result<Settings, SettingsError> {
    let env: HashMap<String, String> = env.into_iter().collect();
    let defaults = defaults_table();
    let mut merged = defaults.clone();
    // The origin of every key set by a layer, for errors found once all are merged.
    let mut origins: HashMap<String, Origin> = HashMap::new();

    for (origin, text) in sources(profile, file, &env)? {
        let table = parse(&origin, &text)?;
        check_table(&defaults, &table, "", &origin)?;
        // Ranges (a port above 65535, an address that is not one): this file over the defaults
        // alone, so a failure is this file's.
        let mut alone = defaults.clone();
        merge(&mut alone, &table, "", &origin, &mut HashMap::new());
        deserialize(alone, &origin_of(&origin))?;
        merge(&mut merged, &table, "", &origin, &mut origins);
    }

    let mut vars: Vec<_> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, text) in vars {
        let key = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        set_text(
            &defaults,
            &mut merged,
            &key,
            text,
            Origin::Env(var.clone()),
            &mut origins,
        )?;
    }
    for (key, text) in overrides {
        let origin = Origin::CommandLine((*key).to_string());
        set_text(&defaults, &mut merged, key, text, origin, &mut origins)?;
    }

    let mut s = deserialize(merged, &|key: &str| {
        origins
            .get(key)
            .map_or_else(|| "configuration".to_string(), ToString::to_string)
    })?;
    check_name(
        &s.node.name,
        origins.get("node.name").map(ToString::to_string),
    )?;
    if s.node.name.is_empty() {
        s.node.name = profile.unwrap_or("default").to_string();
    }
    if s.node.data_dir.as_os_str().is_empty() {
        let base = directories::ProjectDirs::from("", "", "pgpchat")
            .map(|p| p.data_dir().to_path_buf())
            .ok_or_else(|| {
                SettingsError::Invalid("no home directory: set node.data_dir or --data-dir".into())
            })?;
        s.node.data_dir = base.join(profile.unwrap_or("default"));
    }
    s.validate().map_err(|e| match e {
        SettingsError::Rule { key, why } => SettingsError::OutOfRange {
            origin: origins
                .get(&key)
                .map_or_else(|| "configuration".to_string(), ToString::to_string),
            key,
            why,
        },
        e => e,
    })?;
    Ok(s)
}

fn origin_of(origin: &Origin) -> impl Fn(&str) -> String + '_ {
    move |_| origin.to_string()
}

/// Every key with its default value and type.
fn defaults_table() -> Table {
    match Value::try_from(Settings::default()) {
        Ok(Value::Table(t)) => t,
        // The defaults are plain numbers, booleans and strings: this cannot fail.
        _ => Table::new(),
    }
}

/// Parse a file; a syntax error names the file, the line and the column.
fn parse(origin: &Origin, text: &str) -> Result<Table, SettingsError> {
    text.parse::<Table>().map_err(|e| {
        let at = e.span().map(|s| {
            // A span inside a character (never expected) must not panic: then count the whole text.
            let before = text.get(..s.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        SettingsError::Syntax {
            origin: origin.to_string(),
            message: format!("{}{}", at.unwrap_or_default(), one_line(e.message())),
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every key of `table` must exist in `defaults` with the same type.
fn check_table(
    defaults: &Table,
    table: &Table,
    prefix: &str,
    origin: &Origin,
) -> Result<(), SettingsError> {
    for (k, v) in table {
        let key = join(prefix, k);
        let Some(d) = defaults.get(k) else {
            return Err(unknown(defaults, prefix, &key, origin));
        };
        match (d, v) {
            (Value::Table(dt), Value::Table(t)) => check_table(dt, t, &key, origin)?,
            (Value::Integer(_), Value::Integer(_))
            | (Value::Boolean(_), Value::Boolean(_))
            | (Value::String(_), Value::String(_)) => {}
            // Lists (`sharing.share`) hold texts; which texts is the key's own check.
            (Value::Array(_), Value::Array(items)) => {
                if let Some(other) = items.iter().find(|i| !i.is_str()) {
                    return Err(bad_value(origin, &key, d, &describe(other)));
                }
            }
            _ => return Err(bad_value(origin, &key, d, &describe(v))),
        }
    }
    Ok(())
}

fn unknown(defaults: &Table, prefix: &str, key: &str, origin: &Origin) -> SettingsError {
    let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
    SettingsError::UnknownKey {
        origin: origin.to_string(),
        key: key.to_string(),
        known: format!(
            "{}: {}",
            if prefix.is_empty() {
                "the sections are".to_string()
            } else {
                format!("the keys of [{prefix}] are")
            },
            known.join(", ")
        ),
    }
}

/// What a key of this default's type takes, in words.
fn expectation(default: &Value) -> &'static str {
    match default {
        Value::Boolean(_) => "true or false (without quotes)",
        Value::Integer(_) => "a whole number (without quotes)",
        Value::String(_) => "text in double quotes",
        Value::Table(_) => "a section of keys",
        Value::Array(_) => "a list of texts in double quotes, such as [\"broadcast\"]",
        _ => "another kind of value",
    }
}

fn bad_value(origin: &Origin, key: &str, default: &Value, found: &str) -> SettingsError {
    SettingsError::BadValue {
        origin: origin.to_string(),
        key: key.to_string(),
        expected: expectation(default).to_string(),
        found: found.to_string(),
    }
}

/// A value as an error quotes it.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the text {:?}", quote(s)),
        Value::Integer(i) => format!("the number {i}"),
        Value::Float(f) => format!("the decimal number {f}"),
        Value::Boolean(b) => format!("{b}"),
        Value::Datetime(d) => format!("the date {d}"),
        Value::Array(_) => "a list".to_string(),
        Value::Table(_) => "a section".to_string(),
    }
}

fn quote(s: &str) -> String {
    if s.chars().count() > MAX_QUOTED_CHARS {
        format!(
            "{}...",
            s.chars().take(MAX_QUOTED_CHARS).collect::<String>()
        )
    } else {
        s.to_string()
    }
}

/// Merge `table` into `into`, recording each leaf key's origin.
fn merge(
    into: &mut Table,
    table: &Table,
    prefix: &str,
    origin: &Origin,
    origins: &mut HashMap<String, Origin>,
) {
    for (k, v) in table {
        let key = join(prefix, k);
        match (into.get_mut(k), v) {
            (Some(Value::Table(it)), Value::Table(t)) => merge(it, t, &key, origin, origins),
            _ => {
                into.insert(k.clone(), v.clone());
                origins.insert(key, origin.clone());
            }
        }
    }
}

/// Set one key from text (an environment variable, a command-line option), parsed as the key's
/// type.
fn set_text(
    defaults: &Table,
    merged: &mut Table,
    key: &str,
    text: &str,
    origin: Origin,
    origins: &mut HashMap<String, Origin>,
) -> Result<(), SettingsError> {
    let parts: Vec<&str> = key.split('.').collect();
    let (Some((leaf, sections)), false) = (parts.split_last(), parts.iter().any(|p| p.is_empty()))
    else {
        return Err(unknown(defaults, "", key, &origin));
    };
    let mut d = defaults;
    let mut prefix = String::new();
    for s in sections {
        match d.get(*s) {
            Some(Value::Table(t)) => d = t,
            _ => return Err(unknown(d, &prefix, key, &origin)),
        }
        prefix = join(&prefix, s);
    }
    let Some(default) = d.get(*leaf) else {
        return Err(unknown(d, &prefix, key, &origin));
    };
    let found = || format!("the text {:?}", quote(text));
    let value = match default {
        Value::Integer(_) => text
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| bad_value(&origin, key, default, &found()))?,
        Value::Boolean(_) => match text.trim() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => {
                return Err(SettingsError::BadValue {
                    origin: origin.to_string(),
                    key: key.to_string(),
                    expected: "true or false".into(),
                    found: found(),
                })
            }
        },
        Value::String(_) => Value::String(text.to_string()),
        _ => return Err(bad_value(&origin, key, default, &found())),
    };
    let mut t = merged;
    for s in sections {
        t = match t
            .entry((*s).to_string())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(t) => t,
            // The defaults make every section a table, and files are checked against them.
            _ => return Err(unknown(defaults, "", key, &origin)),
        };
    }
    t.insert((*leaf).to_string(), value);
    origins.insert(key.to_string(), origin);
    Ok(())
}

/// Deserialize checked values; what remains to fail is a range (a number too large for its key, an
/// address that is not one), reported with the origin of the key.
fn deserialize(table: Table, origin: &dyn Fn(&str) -> String) -> Result<Settings, SettingsError> {
    let value = Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, Settings>(value).map_err(|e| {
        let key = e.path().to_string();
        let found = lookup(&table, &key).map_or_else(String::new, describe);
        let message = e.inner().to_string();
        let expected = if message.contains("u16") {
            "a whole number from 0 to 65535".to_string()
        } else if message.contains("u8") {
            "a whole number from 0 to 255".to_string()
        } else if message.contains("IP address") {
            "an IP address in double quotes, such as \"127.0.0.1\"".to_string()
        } else if message.contains("u64") || message.contains("usize") || message.contains("u32") {
            // The real range: a key whose rule refuses 0 says so (a negative number used to be
            // told "0 or more", and then 0 "must be at least 1").
            match least_rule(&table, &key) {
                Some(why) => format!("a whole number that {why}"),
                None => "a whole number, 0 or more".to_string(),
            }
        } else {
            // Not expected after the checks above; still one line, in the error's own words.
            one_line(&message)
        };
        SettingsError::BadValue {
            origin: origin(&key),
            key,
            expected,
            found,
        }
    })
}

/// The rule [`Settings::validate`] gives `key` when it is 0, if 0 breaks one: the table with
/// `key` at 0, checked (None when something else stops the check first).
fn least_rule(table: &Table, key: &str) -> Option<String> {
    let mut probe = table.clone();
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop()?;
    let mut t = &mut probe;
    for p in parts {
        t = t.get_mut(p)?.as_table_mut()?;
    }
    t.insert(leaf.to_string(), Value::Integer(0));
    let s: Settings = Value::Table(probe).try_into().ok()?;
    match s.validate() {
        Err(SettingsError::Rule { key: k, why }) if k == key => Some(why),
        _ => None,
    }
}

/// `node.name` when it was set (the default, empty, means the profile's name): 1 to
/// [`MAX_NAME_CHARS`](crate::discovery::MAX_NAME_CHARS) characters, none a control character, as
/// `init` takes it.
fn check_name(name: &str, origin: Option<String>) -> Result<(), SettingsError> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let n = name.trim().chars().count();
    if n == 0 || n > crate::discovery::MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(SettingsError::BadValue {
            origin,
            key: "node.name".into(),
            expected: format!(
                "a name of 1 to {} characters, in double quotes",
                crate::discovery::MAX_NAME_CHARS
            ),
            found: describe(&Value::String(name.to_string())),
        });
    }
    Ok(())
}

fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut v = table.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}
