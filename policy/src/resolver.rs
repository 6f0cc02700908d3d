//! `import "name"`: modules from the script's own folder, and nothing else.
//!
//! Rhai's own file resolver would read any path it is given. This one refuses absolute paths
//! and anything that, once symbolic links and `..` are resolved, lies outside the folder of
//! the script being run; it refuses import cycles, which would otherwise recurse until the
//! stack overflows; and it keeps every module's text so that errors inside one can quote it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use super::limits::{MAX_MODULES, MAX_SOURCE_BYTES};

/// The text of every script and module read in one evaluation, by the name messages use.
pub(crate) type Sources = Rc<RefCell<BTreeMap<String, String>>>;

/// Resolves imports against one folder.
#[derive(Debug)]
pub(crate) struct FolderResolver {
    /// The folder, canonical; `None` when the script has no folder (fuzzing, tests) and so
    /// may import nothing.
    folder: Option<PathBuf>,
    /// The folder as the user named it, for messages (`examples/policy.rhai`).
    shown: PathBuf,
    sources: Sources,
    modules: RefCell<HashMap<PathBuf, Shared<Module>>>,
    /// Modules being evaluated, innermost last, to catch cycles.
    loading: RefCell<Vec<PathBuf>>,
}

impl FolderResolver {
    pub(crate) fn new(folder: Option<&Path>, sources: Sources) -> Self {
        let shown = folder.map(Path::to_owned).unwrap_or_default();
        FolderResolver {
            folder: folder.and_then(|f| {
                let dir = if f.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    f
                };
                dir.canonicalize().ok()
            }),
            shown,
            sources,
            modules: RefCell::new(HashMap::new()),
            loading: RefCell::new(Vec::new()),
        }
    }

    /// The file `import "name"` means, after checking that it may be read.
    fn locate(&self, name: &str) -> Result<(PathBuf, String), String> {
        let Some(folder) = &self.folder else {
            return Err(format!(
                "import {name:?}: this script has no folder to import from"
            ));
        };
        let relative = Path::new(name);
        if relative.is_absolute() {
            return Err(format!(
                "import {name:?}: absolute paths are refused; a policy imports only modules from its own folder, e.g. import \"policy\" for policy.rhai beside it"
            ));
        }
        let file = if name.ends_with(".rhai") {
            relative.to_owned()
        } else {
            PathBuf::from(format!("{name}.rhai"))
        };
        let canonical = folder.join(&file).canonicalize().map_err(|e| {
            format!(
                "import {name:?}: cannot open {}: {e}",
                self.shown.join(&file).display()
            )
        })?;
        if !canonical.starts_with(folder) {
            return Err(format!(
                "import {name:?}: {} is outside the script's folder; a policy imports only modules from its own folder",
                canonical.display()
            ));
        }
        Ok((canonical, self.shown.join(&file).display().to_string()))
    }

    fn load(
        &self,
        engine: &Engine,
        canonical: &Path,
        shown: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let text = read_limited(canonical).map_err(|e| runtime(format!("import: {e}"), pos))?;
        self.sources
            .borrow_mut()
            .insert(shown.to_owned(), text.clone());
        let in_module = |err: Box<EvalAltResult>| -> Box<EvalAltResult> {
            EvalAltResult::ErrorInModule(shown.to_owned(), err, pos).into()
        };
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        ast.set_source(shown);
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        Ok(module.into())
    }
}

impl ModuleResolver for FolderResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (canonical, shown) = self.locate(path).map_err(|e| runtime(e, pos))?;
        if let Some(module) = self.modules.borrow().get(&canonical) {
            return Ok(module.clone());
        }
        if self.loading.borrow().contains(&canonical) {
            return Err(runtime(
                format!("import {path:?}: {shown} imports itself through a cycle of imports"),
                pos,
            ));
        }
        if self.modules.borrow().len() + self.loading.borrow().len() >= MAX_MODULES {
            return Err(runtime(
                format!(
                    "import {path:?}: more than {MAX_MODULES} modules; a policy needs far fewer"
                ),
                pos,
            ));
        }
        self.loading.borrow_mut().push(canonical.clone());
        let loaded = self.load(engine, &canonical, &shown, pos);
        self.loading.borrow_mut().pop();
        let module = loaded?;
        self.modules.borrow_mut().insert(canonical, module.clone());
        Ok(module)
    }
}

fn runtime(message: String, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), pos).into()
}

/// Reads a script, refusing one too large to be a policy before reading all of it.
pub(crate) fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SOURCE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_SOURCE_BYTES} bytes, too large for a policy",
            path.display()
        ));
    }
    Ok(text)
}
