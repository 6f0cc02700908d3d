//! `docs/policy.md`, generated from the functions the engine registers (Rhai's metadata
//! export), so the reference cannot drift from the code: a test compares the checked-in file
//! with [`reference_markdown`].

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::engine::{
    DEADLINE, MAX_ARRAY_ITEMS, MAX_CALL_LEVELS, MAX_MAP_ENTRIES, MAX_OPERATIONS, MAX_SOURCE_BYTES,
    MAX_STRING_BYTES,
};

/// The part of Rhai's metadata JSON the reference uses.
#[derive(Deserialize)]
struct Metadata {
    functions: Vec<Function>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Function {
    name: String,
    #[serde(default)]
    params: Vec<Param>,
    return_type: Option<String>,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(Deserialize)]
struct Param {
    name: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
}

/// Where each function is listed: by what it is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Functions,
    PlanMethods,
    Host,
    Workload,
}

impl Section {
    fn title(self) -> &'static str {
        match self {
            Section::Functions => "Functions",
            Section::PlanMethods => "Plan methods",
            Section::Host => "`host`",
            Section::Workload => "`workload`",
        }
    }

    fn intro(self) -> &'static str {
        match self {
            Section::Functions => "Making Plans and groups, and sizes.",
            Section::PlanMethods => {
                "Each sets one part of a Plan `p` in place (`p.memory(\"256M\");`) and records \
                 the line, so a problem found by validation points there. The Plan's JSON field \
                 is named in error messages (`resources.memory = \"64K\": ...`)."
            }
            Section::Host => "Read-only facts about the host.",
            Section::Workload => "What the command line asks to run, read-only.",
        }
    }
}

const PREFACE: &str = r#"A policy is a `.rhai` script ([Rhai](https://rhai.rs/book/) syntax) that decides how to
isolate a workload. `capsule run job.rhai` evaluates it and launches what it returns;
`capsule plan job.rhai` prints the Plans as JSON; `capsule check job.rhai` validates them.

```rhai
// job.rhai: the command after `--`, in a container unless the code is untrusted.
let p = plan(workload);            // --rootfs DIR, -e KEY=VALUE and the command after --
p.memory("256M");
p.cpus(1.5);
if vars.trust != "yes" {           // capsule run job.rhai --set trust=yes -- CMD
    p.untrusted(host);             // a microVM on hardware KVM, else a hardened container
}
p                                  // the script's value: the Plan to launch
```

## Inputs

Three constants: `host` (facts about this machine, below), `workload` (below) and `vars`, a
map of the `--set KEY=VALUE` pairs (`vars.tenant`, `()` when absent: `vars.tenant ?? "default"`).
Rhai functions are pure: a function sees only its parameters, so pass `host`, `workload` or
`vars` to the functions that need them, as `untrusted(p, host)` does.

`capsule plan` and `capsule check` take `--host-facts FILE.json` (hidden) to evaluate against
fixed facts instead of this host's: an object with every field of `host` below, e.g.
`{"kvm": "hardware", "cgroups": "v2", "cpus": 8, "memory_total": 17179869184,
"memory_free": 8589934592, "arch": "x86_64", "kernel": "6.1.0", "rootless": false,
"subids": null}` (`subids`: `{"uid": {"start": 231072, "count": 65536}, "gid": {...}}` when
`/etc/subuid` and `/etc/subgid` have `capsule` lines).

## The script's value

One Plan; an array of Plans, launched together (the exit status is the first non-zero one,
in array order); or `in_order([...])`, launched one after another, stopping at the first
that fails. `capsule plan` prints one Plan as a JSON object, an array as an array, and an
`in_order` group as `{"inOrder": [...]}`, so the order survives; `capsule run --plan FILE`
launches any of the three as the script would (a one-Plan group prints as that Plan).

## Modules

`import "policy" as policy;` loads `policy.rhai` from the script's own folder (or a folder
below it); absolute paths, paths that lead outside the folder, and import cycles are
refused. `policy::choose(p, host)` then calls its functions.

## Errors

Syntax errors, runtime errors (`throw "message"` refuses with your own message) and
validation problems print as `file:line:column: message` with the line and a caret, and exit
125. Validation happens after the script ends, against this host, and points at the call that
set the field at fault.

## Limits

A policy cannot read files, run programs or reach the network; `eval` is disabled. It may
run LIMIT_OPERATIONS operations for at most LIMIT_SECONDS s, nest function calls LIMIT_CALLS
deep, build strings of LIMIT_STRING bytes, arrays of LIMIT_ARRAY items and maps of LIMIT_MAP
entries; a script or module file holds at most LIMIT_SOURCE bytes."#;

/// The reference of the policy language, as checked in at `docs/policy.md`.
pub fn reference_markdown() -> String {
    let mut engine = rhai::Engine::new_raw();
    super::api::register(&mut engine);
    let json = engine
        .gen_fn_metadata_to_json(false)
        .expect("Rhai's metadata serialises");
    let metadata: Metadata =
        serde_json::from_str(&json).expect("Rhai's metadata has its documented shape");

    let mut sections: BTreeMap<Section, Vec<(String, String)>> = BTreeMap::new();
    for f in &metadata.functions {
        let (section, heading) = describe(f);
        let doc = f
            .doc_comments
            .iter()
            .flat_map(|c| c.lines())
            .map(|l| {
                l.trim_start_matches("///")
                    .strip_prefix(' ')
                    .unwrap_or(l.trim_start_matches("///"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        sections.entry(section).or_default().push((heading, doc));
    }

    let mut out = String::from(
        "# The policy language\n\n<!-- Generated by scripting::policy::reference_markdown from the registered functions; \
         do not edit. Regenerate with `cargo xtask policy-doc`. -->\n\n",
    );
    out.push_str(
        &PREFACE
            .replace("LIMIT_OPERATIONS", &MAX_OPERATIONS.to_string())
            .replace("LIMIT_SECONDS", &DEADLINE.as_secs().to_string())
            .replace("LIMIT_CALLS", &MAX_CALL_LEVELS.to_string())
            .replace("LIMIT_STRING", &MAX_STRING_BYTES.to_string())
            .replace("LIMIT_ARRAY", &MAX_ARRAY_ITEMS.to_string())
            .replace("LIMIT_MAP", &MAX_MAP_ENTRIES.to_string())
            .replace("LIMIT_SOURCE", &MAX_SOURCE_BYTES.to_string()),
    );
    out.push('\n');
    for (section, mut entries) in sections {
        entries.sort();
        let _ = write!(out, "\n## {}\n\n{}\n", section.title(), section.intro());
        for (heading, doc) in entries {
            let _ = write!(out, "\n### `{heading}`\n\n{doc}\n");
        }
    }
    out
}

/// The section and the heading (`p.memory(limit: size)`) of one function.
fn describe(f: &Function) -> (Section, String) {
    let params: Vec<(String, String)> = f
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_else(|| "_".to_owned()),
                match p.typ.as_deref() {
                    // Setters taking several forms say which in their description.
                    Some("Dynamic") if p.name.as_deref() == Some("amount") => "number | string",
                    Some("Dynamic") if p.name.as_deref() == Some("duration") => "number | string",
                    Some("Dynamic") => "int | string",
                    other => script_type(other.unwrap_or("?")),
                }
                .to_owned(),
            )
        })
        .collect();
    let returns = script_type(f.return_type.as_deref().unwrap_or("()"));
    let arrow = if returns == "()" {
        String::new()
    } else {
        format!(" -> {returns}")
    };
    if let Some(property) = f.name.strip_prefix("get$") {
        let section = match params.first().map(|p| p.1.as_str()) {
            Some("Host") => Section::Host,
            _ => Section::Workload,
        };
        let owner = if section == Section::Host {
            "host"
        } else {
            "workload"
        };
        return (section, format!("{owner}.{property}{arrow}"));
    }
    let list = |params: &[(String, String)]| {
        params
            .iter()
            .map(|(name, typ)| format!("{name}: {typ}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match params.split_first() {
        Some(((receiver, typ), rest)) if typ == "Plan" && f.name != "plan" => (
            Section::PlanMethods,
            format!("{receiver}.{}({}){arrow}", f.name, list(rest)),
        ),
        _ => (
            Section::Functions,
            format!("{}({}){arrow}", f.name, list(&params)),
        ),
    }
}

/// A Rust type in the metadata as a script author knows it.
fn script_type(rust: &str) -> &str {
    let rust = rust
        .strip_prefix("Result<")
        .and_then(|r| r.strip_suffix(",Refusal>"))
        .unwrap_or(rust);
    match rust.trim_start_matches("&mut ").trim_start_matches('&') {
        "ScriptPlan" => "Plan",
        "HostFacts" => "Host",
        "str" | "String" => "string",
        "INT" | "i64" => "int",
        "Array" => "array",
        "Map" => "map",
        other => other,
    }
}
