//! The man page, generated from the CLI definition: one page for everything (clap_mangen's own
//! page links to a page per command, `pgpchat-history(1)`, that nothing installs). clap_mangen
//! draws the title, name, synopsis, description and global options; each command follows with
//! its usage and its own options; the end of `--help` (examples, configuration, environment, exit
//! status) becomes sections of their own, kept as they are written (no-fill: the examples' columns
//! stay aligned).

/// The whole page (roff).
pub fn render(cmd: clap::Command) -> std::io::Result<String> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut page = String::from_utf8_lossy(&out).into_owned();
    page.push_str(&commands(&cmd));
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        page.push_str(&after_help(&after.to_string()));
    }
    let mut out = Vec::new();
    man.render_version_section(&mut out)?;
    page.push_str(&String::from_utf8_lossy(&out));
    Ok(page)
}

/// `text` safe in roff: a backslash is written `\e`, a dash `\-`, and a line that would start
/// with a control character (`.` or `'`) starts with the empty `\&` first.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `.SH COMMANDS`: each command's usage, what it does, and its own options (global options are
/// listed once, above).
fn commands(cmd: &clap::Command) -> String {
    let mut s = String::from(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim();
        s.push_str(&format!(".TP\n\\fB{}\\fR\n", escape(usage)));
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            for l in about.to_string().lines() {
                s.push_str(&escape(l));
                s.push('\n');
            }
        }
        let own: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if own.is_empty() {
            continue;
        }
        s.push_str(".RS\n");
        for a in own {
            s.push_str(&format!(".TP\n{}\n", arg_name(a)));
            if let Some(help) = a.get_long_help().or_else(|| a.get_help()) {
                for l in help.to_string().lines() {
                    s.push_str(&escape(l));
                    s.push('\n');
                }
            }
        }
        s.push_str(".RE\n");
    }
    s
}

/// `\fB--before\fR \fISEQ\fR`, `\fB-n\fR, \fB--limit\fR ...`, or `\fIDISCUSSION\fR`.
fn arg_name(a: &clap::Arg) -> String {
    let values: Vec<String> = a
        .get_value_names()
        .map(|v| v.iter().map(|n| format!("\\fI{}\\fR", escape(n))).collect())
        .unwrap_or_default();
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    let mut names = Vec::new();
    if let Some(c) = a.get_short() {
        names.push(format!("\\fB\\-{}\\fR", escape(&c.to_string())));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(l)));
    }
    if names.is_empty() {
        // A positional argument: its value name is its name.
        return if values.is_empty() {
            format!("\\fI{}\\fR", escape(a.get_id().as_str()).to_uppercase())
        } else {
            values.join(" ")
        };
    }
    let mut n = names.join(", ");
    if takes_value && !values.is_empty() {
        n.push(' ');
        n.push_str(&values.join(" "));
    }
    n
}

/// The end of `--help`: each paragraph that starts with `Heading:` is a section of that name,
/// its lines kept as written (no-fill), so columns stay aligned.
fn after_help(text: &str) -> String {
    let mut s = String::new();
    for para in text.split("\n\n") {
        let mut lines = para.lines();
        let Some(first) = lines.next() else { continue };
        match first.strip_suffix(':') {
            Some(title) => {
                // `Configuration (docs/configuration.md), ...:`: the section is named by its
                // first words, and the line is kept for what follows them.
                let (heading, rest) = title.split_once(" (").unwrap_or((title, ""));
                s.push_str(&format!(".SH {}\n", escape(&heading.to_uppercase())));
                if !rest.is_empty() {
                    s.push_str(&escape(first));
                    s.push('\n');
                }
            }
            None => {
                s.push_str(".PP\n");
                s.push_str(&escape(first));
                s.push('\n');
            }
        }
        s.push_str(".nf\n");
        for l in lines {
            s.push_str(&escape(l));
            s.push('\n');
        }
        s.push_str(".fi\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a\\b --x"), "a\\eb \\-\\-x");
    }
}
