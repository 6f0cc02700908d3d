//! A Plan as a script holds it: the Plan itself plus, for each field, where the script set
//! it, so that a refusal found later by validation can point at that line.

use std::collections::BTreeMap;
use std::rc::Rc;

use plan::{CapMask, ImageFiles, Plan};
use rhai::{Dynamic, NativeCallContext, Position};

/// Where a script set a field, and the value as it wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The script or module file, as named in messages.
    pub source: String,
    /// Line and column in it.
    pub position: Position,
    /// The value as the script gave it, e.g. `"64K"` (quoted) or `67108864`.
    pub written: String,
}

/// The Plan field that `plan()` created, used for any field no setter touched.
pub(crate) const CREATED: &str = "";

/// A Plan under construction, the type scripts see as `Plan`.
#[derive(Debug, Clone)]
pub struct ScriptPlan {
    pub(crate) plan: Plan,
    /// Keyed by the field's path in the Plan's JSON (`resources.memory`, `mounts[0]`), as
    /// validation problems name them; the last setter wins, as it does for the value.
    origins: BTreeMap<String, Origin>,
    /// What `cap_add()` added, made ambient for a non-root user once the Plan is complete
    /// (whichever of `user()` and `cap_add()` came first).
    pub(crate) added_caps: CapMask,
}

impl ScriptPlan {
    pub(crate) fn new(plan: Plan, ctx: &NativeCallContext, written: String) -> Self {
        let mut p = ScriptPlan {
            plan,
            origins: BTreeMap::new(),
            added_caps: CapMask::default(),
        };
        p.record(ctx, CREATED, written);
        p
    }

    /// Notes that the call in `ctx` set `field` to `written`.
    pub(crate) fn record(&mut self, ctx: &NativeCallContext, field: &str, written: String) {
        let origin = Origin {
            source: caller_source(ctx),
            position: ctx.call_position(),
            written,
        };
        self.origins.insert(field.to_owned(), origin);
    }

    /// Where `field` was set: the field itself; else, for a problem with a whole part
    /// (`vm`, `resources`), the setter of one of its fields; else the nearest enclosing field
    /// that was set (`vm` for `vm.kernel`); else where the Plan was created.
    pub fn origin(&self, field: &str) -> Option<&Origin> {
        if let Some(origin) = self.origins.get(field) {
            return Some(origin);
        }
        if !field.is_empty() {
            let inside = self.origins.iter().find(|(path, _)| {
                path.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            });
            if let Some((_, origin)) = inside {
                return Some(origin);
            }
        }
        let mut path = field;
        loop {
            if let Some(origin) = self.origins.get(path) {
                return Some(origin);
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.origins.get(CREATED),
            }
        }
    }

    /// The exact origin of `field`, without falling back to enclosing fields.
    pub fn exact_origin(&self, field: &str) -> Option<&Origin> {
        self.origins.get(field)
    }

    /// The Plan as built so far.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// [`Plan::derive_defaults`], and the capabilities `cap_add()` added made ambient for a
    /// user other than root, as `--cap-add` with `--user` makes them
    /// ([`plan::Capabilities::raise_ambient`]). A derived field is blamed on the setter of
    /// the field it comes from (`memorySwap` on `memory()`).
    pub(crate) fn derive_defaults(&mut self) {
        if self.plan.process.user.uid != 0 {
            self.plan
                .process
                .capabilities
                .raise_ambient(self.added_caps);
        }
        let before = self.plan.resources.memory_swap;
        self.plan.derive_defaults();
        if self.plan.resources.memory_swap != before
            && let Some(origin) = self.origins.get("resources.memory").cloned()
        {
            self.origins
                .insert("resources.memorySwap".to_owned(), origin);
        }
    }
}

/// The file the calling script statement is in.
///
/// Rhai keeps the main script's name as the call source even inside a function of an
/// imported module; the function's own namespace (pushed last while it runs) carries the
/// module's name. Top-level code of a module being imported runs with the module as the call
/// source, which differs from the main script's.
fn caller_source(ctx: &NativeCallContext) -> String {
    let call_source = ctx.call_source().unwrap_or_default();
    let main = ctx
        .tag()
        .and_then(|tag| tag.read_lock::<EngineTag>().map(|t| t.main.clone()))
        .unwrap_or_default();
    if call_source != main {
        return call_source.to_owned();
    }
    ctx.iter_namespaces()
        .last()
        .and_then(|module| module.id())
        .unwrap_or(call_source)
        .to_owned()
}

/// What the registered functions need of the evaluation, kept in the engine's tag.
#[derive(Debug, Clone)]
pub(crate) struct EngineTag {
    /// The main script's name, so that [`caller_source`] can tell a module's top level from
    /// the main script.
    pub main: String,
    /// How `user()` reads the image's `/etc/passwd` and `/etc/group`.
    pub image_files: Rc<dyn ImageFiles>,
}

/// The image reader of the evaluation `ctx` belongs to.
pub(crate) fn image_files(ctx: &NativeCallContext) -> Option<Rc<dyn ImageFiles>> {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<EngineTag>().map(|t| t.image_files.clone()))
}

/// Several Plans launched together, or one after another when `sequential`.
#[derive(Debug, Clone)]
pub struct Group {
    pub(crate) plans: Vec<ScriptPlan>,
    pub(crate) sequential: bool,
}

/// How a script wrote a value: strings quoted, everything else as Rhai prints it.
pub(crate) fn written(value: &Dynamic) -> String {
    match value.read_lock::<rhai::ImmutableString>() {
        Some(s) => format!("{:?}", s.as_str()),
        None => value.to_string(),
    }
}
