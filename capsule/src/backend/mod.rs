//! The backends that carry out a Plan, one per isolation, behind one trait, and the
//! [`Launcher`] that picks the backend of a Plan, checks the Plan and runs it.

use plan::{Host, Isolation, Outcome, Plan, Problem};

use crate::Error;
use crate::signals::StopHandle;

pub mod agent;
pub mod container;
pub mod kata;
pub mod microvm;

/// The workload's input and terminal, as `docker run`'s `-i` and `-t` give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdin {
    /// `-i`: capsule's own stdin flows to the command, and its end ends the command's input.
    /// Without, the command's stdin is empty (at its end at once) under every isolation.
    pub interactive: bool,
    /// `-t`: the command runs on a terminal. A microVM's guest gives it a pseudo-terminal
    /// of the size of capsule's (its stderr joins stdout; with `-i` capsule's terminal is
    /// raw for the session); a container's command has capsule's own terminal.
    pub tty: bool,
}

impl Stdin {
    /// No input and no terminal: a group's members run at once, and none may own the
    /// terminal's input.
    pub const NULL: Stdin = Stdin {
        interactive: false,
        tty: false,
    };
}

/// One way of isolating a Plan's process. `Sync`: the members of a group run on threads of
/// one process, sharing the [`Launcher`].
pub trait Backend: Sync {
    /// What only this backend sees wrong with `plan` on this host, beyond [`plan::validate`]:
    /// files the Plan names that do not exist, limits the host's cgroups cannot give.
    ///
    /// # Errors
    ///
    /// [`plan::Error::Unsupported`] when this host cannot run the isolation at all.
    fn problems(&self, plan: &Plan, host: &Host) -> Result<Vec<Problem>, plan::Error>;

    /// Runs a Plan that passed [`Launcher::check`] to completion and reports how it went.
    /// The signals delivered to `stop` while it runs go to the workload (a container's PID 1,
    /// a microVM's command through the guest agent). `stdin` says whether the command reads
    /// capsule's stdin and has a terminal.
    ///
    /// # Errors
    ///
    /// What failed before the workload could run or be waited for; everything the launch
    /// created is removed first.
    fn run(
        &self,
        plan: &Plan,
        host: &Host,
        stop: &StopHandle,
        stdin: Stdin,
    ) -> Result<Outcome, Error>;
}

/// Every backend of this build, set up for this host.
#[derive(Debug)]
pub struct Launcher {
    container: container::Container,
    microvm: microvm::Microvm,
    kata: kata::Kata,
}

impl Launcher {
    /// The backends as this host can run them (its cgroup hierarchy, read once).
    pub fn detect() -> Launcher {
        Launcher::with_cgroups(cgroup_core::detect().ok())
    }

    /// The backends on a host whose cgroup hierarchy is `cgroups` (`None`: it has none).
    pub fn with_cgroups(cgroups: Option<cgroup_core::Layout>) -> Launcher {
        Launcher {
            container: container::Container::new(cgroups),
            microvm: microvm::Microvm,
            kata: kata::Kata,
        }
    }

    /// The facts of this host ([`host::probe`](crate::host::probe)) with the cgroup hierarchy
    /// these backends use, read once.
    pub fn probe_host(&self) -> Host {
        crate::host::probe(self.container.cgroups())
    }

    /// The backend of `isolation`.
    pub fn backend(&self, isolation: Isolation) -> &dyn Backend {
        match isolation {
            Isolation::Container => &self.container,
            Isolation::Microvm => &self.microvm,
            Isolation::Kata => &self.kata,
        }
    }

    /// Checks `plan` as a whole before anything is created: its root, [`plan::validate`]
    /// against `host`, and its backend's [`Backend::problems`], every problem at once.
    ///
    /// # Errors
    ///
    /// [`plan::Error::Invalid`] listing the problems, [`plan::Error::Unsupported`] when the
    /// Plan's isolation cannot run here at all.
    pub fn check(&self, plan: &Plan, host: &Host) -> Result<(), plan::Error> {
        let backend_problems = self.backend(plan.isolation).problems(plan, host)?;
        let mut problems = root_problems(plan);
        problems.extend(plan::validate(plan, host));
        problems.extend(backend_problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(plan::Error::Invalid(problems))
        }
    }

    /// Runs `plan`, which [`Launcher::check`] accepted, with its backend: each Plan is
    /// checked once, where its problems can be reported best (at the script's lines, or at
    /// the Plan's place in a saved group).
    ///
    /// # Errors
    ///
    /// As [`Backend::run`].
    pub fn run(
        &self,
        plan: &Plan,
        host: &Host,
        stop: &StopHandle,
        stdin: Stdin,
    ) -> Result<Outcome, Error> {
        self.backend(plan.isolation).run(plan, host, stop, stdin)
    }
}

/// The root filesystem every isolation needs: an existing directory, or for a microVM a disk
/// image file too (whose content its backend checks).
fn root_problems(plan: &Plan) -> Vec<Problem> {
    let root = &plan.root.path;
    let subject = format!("root.path {}", root.display());
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Vec::new(),
        Ok(m) if m.is_file() && plan.isolation != Isolation::Container => Vec::new(),
        Ok(m) if m.is_file() => vec![
            Problem::new(
                "root.path",
                &subject,
                "a disk image is a microVM's root (its virtio block device); a container's root is a directory",
            )
            .fixes(
                "use --isolation microvm, or give the directory that becomes /",
                "use isolation(\"microvm\"), or give the directory that becomes /",
            ),
        ],
        Ok(_) => vec![
            Problem::new("root.path", &subject, "not a directory or a disk image file")
                .fix("give the directory that becomes /"),
        ],
        Err(e) => vec![
            Problem::new("root.path", &subject, e.to_string())
                .fix("give an existing directory (cargo xtask rootfs busybox builds one)"),
        ],
    }
}
