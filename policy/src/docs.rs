//! `docs/policy.md`, generated from the functions the engine registers (Rhai's metadata
//! export), so the reference cannot drift from the code: a test compares the checked-in file
//! with [`reference_markdown`].

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::limits::{
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

/// The reference of the policy language, as checked in at `docs/policy.md`. `strict_denied`
/// lists the system calls the strict seccomp profile denies beyond Docker's (ns-core's
/// `seccomp::STRICT_DENIED`), which the section on `hardened()` names; the launcher passes
/// them, so this crate needs no seccomp of its own.
pub fn reference_markdown(strict_denied: &[&str]) -> String {
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
        "# The policy language\n\n<!-- Generated by policy::reference_markdown from the registered functions; \
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
    let strict = strict_denied
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let first = super::api::FALLBACK_HOST_ID;
    let size = super::api::HARDENED_IDS;
    out.push_str(
        &HARDENED
            .replace("STRICT_DENIED", &strict)
            .replace("FALLBACK_FIRST", &first.to_string())
            .replace("FALLBACK_LAST", &(first + (size - 1)).to_string())
            .replace("HARDENED_LAST", &(size - 1).to_string())
            .replace("HARDENED_IDS", &size.to_string()),
    );
    out
}

/// What `hardened(host)` gives a container, beyond what its own entry says.
const HARDENED: &str = r#"
## The hardened container

`hardened(host)`, and `untrusted(host)` on a host without hardware KVM, give a container
whose root is not the host's root and whose system calls are filtered more tightly than
Docker's.

### The strict seccomp profile

`seccomp("strict")` (`--seccomp strict`) is Docker's default allow-list minus the kernel
interfaces behind most container escapes and kernel privilege escalations of recent years,
denied whatever capabilities the container holds: STRICT_DENIED, and namespace creation
through `clone`. Each fails with `EPERM`, as Docker's denials do; `clone3` fails with
`ENOSYS` (as in Docker's profile without `CAP_SYS_ADMIN`) so that glibc falls back to
`clone`, whose flags the filter can check. Why each, with the CVEs it carried:

- ptrace and its relatives reach into another process: CVE-2019-13272 (`PTRACE_TRACEME`),
  CVE-2022-30594 (`PTRACE_SEIZE` suspending seccomp);
- `bpf`: verifier bugs that gave root, CVE-2021-3490, CVE-2021-31440, CVE-2022-23222;
- `perf_event_open`: CVE-2013-2094, CVE-2023-5717, CVE-2023-6931;
- namespace creation (`unshare`, `setns`, `clone` with `CLONE_NEW*`): a user namespace hands
  root's kernel code to anyone: CVE-2022-0185 (`fsconfig`), CVE-2022-0492 (cgroup v1
  `release_agent`), CVE-2021-22555, CVE-2023-32233 and CVE-2024-1086 (netfilter),
  CVE-2023-0386 (overlayfs);
- the mount API (`mount`, `fsopen`, `fsconfig`, `open_tree`, `move_mount`, ...):
  CVE-2022-0185, and a mount can undo the runtime's masked and read-only paths;
- `open_by_handle_at` opens inodes past the container's root (the 2014 "shocker" escape);
- modules and I/O ports (`init_module`, `finit_module`, `delete_module`, `iopl`, `ioperm`)
  are the kernel's own powers;
- `modify_ldt`: CVE-2015-3290, CVE-2017-17053, and nothing but DOS and Wine emulators needs it.

Docker's profile already denies, and the strict one keeps denied, `keyctl`, `add_key`,
`request_key` (CVE-2016-0728), `userfaultfd`, the `io_uring_*` calls (CVE-2022-29582,
CVE-2023-2598), `kexec_*`, `pivot_root` and every call it does not list. A workload that needs
one of these (a debugger, a container runtime inside the container) uses `seccomp("default")`
and the capability it needs. The reasons in full are in `ns-core/src/seccomp.rs`.

### The user namespace

Run as root, a hardened container gets a user namespace of its own: its ids 0 to
HARDENED_LAST are host ids that no host user holds, so its root cannot act on host files
as root (read a root-only file bound in, write a root-owned one), and its capabilities count
only inside. The host ids are, in this order:

- the first `capsule` lines of `/etc/subuid` and `/etc/subgid` (subuid(5)), at most
  HARDENED_IDS ids each (`host.subuid`, `host.subgid`), as podman reads those of `containers`
  for `--userns=auto`. Write them by hand (no `capsule` account is needed), e.g.
  `capsule:2000000000:65536` in both files, a range no user or other tool holds;
- otherwise FALLBACK_FIRST to FALLBACK_LAST, right after the ranges systemd-nspawn picks
  from and far above those `useradd` hands out (from 100000).

Every hardened container of a host shares that range (podman's `--userns=auto` gives each
its own): the range keeps them from the host, not from each other. A Plan that maps ids
itself (`map_uids`, `map_gids`) keeps its maps. Rootless, capsule maps your own ids, the only
ones it may, so root inside is you.

The image's files keep their owners inside: capsule mounts the root idmapped through the
container's user namespace (mount_setattr(2) `MOUNT_ATTR_IDMAP`, Linux 5.12; under an
overlay's lower layer 5.19), so a file of host root is root's inside, `/root` opens and
`chown` works on the writable overlay. Volumes (`volume`) are not idmapped: their host owners
stay, so root inside cannot read a root-only host file bound in. Where the kernel or the file
system cannot idmap, the root is bound as it is and its files show as `nobody` (65534):
what needs ownership (files of mode 0600, directories of mode 0700, `chown`, programs that
check the owner of their files) fails there.
"#;

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
        "Host" => "Host",
        "str" | "String" => "string",
        "INT" | "i64" => "int",
        "Array" => "array",
        "Map" => "map",
        other => other,
    }
}
