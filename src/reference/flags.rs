//! `flags.md`: the subcommands and flags of `flashback-operator`, from its clap command.

use clap::CommandFactory;

use crate::cli::Cli;

pub fn page() -> String {
    let command = Cli::command();
    let mut out = super::header(
        "Command line",
        "the clap command of `src/cli.rs` and `src/settings.rs`",
    );
    out.push_str(
        "`flashback-operator [SUBCOMMAND] [FLAGS]`. Every flag also reads the environment \
         variable beside it; a flag given on the command line wins.\n\n## Subcommands\n\n",
    );
    let subcommands: Vec<Vec<String>> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| {
            let flags: Vec<String> = sub
                .get_arguments()
                .filter(|arg| !arg.is_global_set() && arg.get_long().is_some())
                .map(|arg| format!("{}: {}", super::code(&flag(arg)), help(arg)))
                .collect();
            let mut what = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            if !flags.is_empty() {
                what.push(' ');
                what.push_str(&flags.join("; "));
            }
            vec![super::code(sub.get_name()), super::cell(&what)]
        })
        .collect();
    out.push_str(&super::table(&["subcommand", "what it does"], &subcommands));
    out.push_str("\n## Flags\n\n");
    let flags: Vec<Vec<String>> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && arg.get_long().is_some())
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .map(|arg| {
            let env = arg
                .get_env()
                .map(|env| super::code(&env.to_string_lossy()))
                .unwrap_or_default();
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| super::code(&value.to_string_lossy()))
                .collect();
            let default = if default.is_empty() {
                "none".to_string()
            } else {
                default.join(", ")
            };
            vec![
                super::cell(&super::code(&flag(arg))),
                env,
                default,
                super::cell(&help(arg)),
            ]
        })
        .collect();
    out.push_str(&super::table(
        &["flag", "environment", "default", "meaning"],
        &flags,
    ));
    out
}

/// The flag as a person types it: `--name <VALUE>`, `--name <a|b>`, or `--name[=true|false]`.
fn flag(arg: &clap::Arg) -> String {
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    if !arg.get_action().takes_values() {
        return long;
    }
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| value.get_name().to_string())
        .collect();
    let value = if possible.is_empty() {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| arg.get_id().as_str().to_uppercase(), ToString::to_string)
    } else {
        possible.join("|")
    };
    let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
    if optional {
        format!("{long}[={value}]")
    } else {
        format!("{long} <{value}>")
    }
}

/// The flag's whole help, as `--help` shows it.
fn help(arg: &clap::Arg) -> String {
    arg.get_long_help()
        .or_else(|| arg.get_help())
        .map(|help| help.to_string())
        .unwrap_or_default()
}
