//! The BPF compiler: a [`Plan`] as a classic-BPF program, a binary search over syscall
//! numbers written by hand.
//!
//! seccompiler (0.5) only emits a linear chain of comparisons, one block per allowed
//! number: 1,587 instructions for this profile, hundreds of which every system call walks,
//! and 0.6 ms per container launch to attach (measured on the 2-core development VM; the
//! README's container figures). It has no tree mode, so the program is generated here the
//! way libseccomp (runc, crun) lays it out, which measured 83 instructions with at most 16
//! executed per system call for the default profile and Docker's default capabilities:
//!
//! ```text
//!   ld  arch
//!   jeq AUDIT_ARCH_X86_64, +1, +0
//!   ret KILL_PROCESS                  ; any other ABI (i386 `int 0x80`, ...)
//!   ld  nr
//!   jge ... / jge ...                 ; balanced tree over sorted number ranges
//!   <leaf>                            ; ret ALLOW | ret ERRNO(EPERM) | ret ERRNO(ENOSYS)
//!                                     ; | the argument checks of socket/personality/clone
//! ```
//!
//! The ranges cover every 32-bit value, so x32 calls (bit 30 set) and negative numbers land
//! in the last range, above the highest known number, and get `ENOSYS`. Classic BPF jumps
//! only forward, and `jt`/`jf` are 8 bits: the tree is cut into chunks of at most 256
//! instructions, each followed by its own copies of the return instructions it uses, and a
//! `ja` (32-bit offset) trampoline bridges a chunk too long for an 8-bit jump. Jumps are
//! written against labels and resolved (and range-checked) by `Asm::assemble`.
//!
//! Opcodes and `struct seccomp_data` offsets follow `linux/filter.h`, `linux/bpf_common.h`
//! and `linux/seccomp.h`; the program must pass the kernel's `bpf_check_classic` and
//! `seccomp_check_filter` (`kernel/seccomp.c`).

use libc::sock_filter;

use super::plan::{ArgCheck, Plan};
use super::{BpfProgram, SeccompError};

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Emitted by libseccomp, not here; the tests' interpreter and validity check know it.
#[cfg(test)]
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, nr)`, `arch` and `args[0]`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;
/// `AUDIT_ARCH_X86_64` = `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub(super) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// The kernel's `BPF_MAXINSNS`.
pub(super) const MAX_INSNS: usize = 4096;
/// The longest run of instructions in which every forward jump fits `jt`/`jf` (a jump
/// from the first to the last of 256 instructions skips 254).
const CHUNK_INSNS: usize = 256;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);

/// A jump destination, placed with [`Asm::place`] and resolved by [`Asm::assemble`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

/// One element of a program under construction.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Marks where a label points (takes no space).
    Place(Label),
    /// A load, ALU or return instruction.
    Stmt { code: u16, k: u32 },
    /// A conditional jump (`jt` when the comparison holds, else `jf`).
    Jump {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    /// `BPF_JA`, whose offset is 32 bits.
    Always(Label),
}

/// A tiny assembler: instructions with symbolic forward jumps.
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn place(&mut self, label: Label) {
        self.ops.push(Op::Place(label));
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt { code, k });
    }

    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jump { code, k, jt, jf });
    }

    /// Instructions among `ops[from..]`.
    fn insns_since(&self, from: usize) -> usize {
        self.ops[from..]
            .iter()
            .filter(|op| !matches!(op, Op::Place(_)))
            .count()
    }

    /// Resolves the labels; fails with [`SeccompError::Jump`] on a label never placed, a
    /// backward jump or a conditional jump longer than 255.
    fn assemble(&self) -> Result<Vec<sock_filter>, SeccompError> {
        let mut at = vec![None; self.labels];
        let mut pc = 0usize;
        for op in &self.ops {
            match op {
                Op::Place(Label(l)) => at[*l] = Some(pc),
                _ => pc += 1,
            }
        }
        let offset = |pc: usize, Label(l): Label| -> Result<usize, SeccompError> {
            let target = at[l];
            target
                .and_then(|target| target.checked_sub(pc + 1))
                .ok_or(SeccompError::Jump { pc, target })
        };
        let short = |pc: usize, label: Label| -> Result<u8, SeccompError> {
            u8::try_from(offset(pc, label)?).map_err(|_| SeccompError::Jump {
                pc,
                target: at[label.0],
            })
        };
        let mut program = Vec::with_capacity(pc);
        for op in &self.ops {
            let pc = program.len();
            let insn = match *op {
                Op::Place(_) => continue,
                Op::Stmt { code, k } => sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Jump { code, k, jt, jf } => sock_filter {
                    code,
                    jt: short(pc, jt)?,
                    jf: short(pc, jf)?,
                    k,
                },
                Op::Always(to) => sock_filter {
                    code: JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(offset(pc, to)?).map_err(|_| SeccompError::Jump {
                        pc,
                        target: at[to.0],
                    })?,
                },
            };
            program.push(insn);
        }
        Ok(program)
    }
}

/// What the filter does for a range of syscall numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf<'a> {
    /// Return this `SECCOMP_RET_*` value.
    Ret(u32),
    /// Allow when any check holds, else `EPERM`.
    Checks(&'a [ArgCheck]),
}

/// The numbers from `start` up to the next range's start (or `u32::MAX`).
#[derive(Debug, Clone, Copy)]
struct Range<'a> {
    start: u32,
    leaf: Leaf<'a>,
}

/// The plan as sorted ranges covering every 32-bit syscall number, neighbours with the
/// same return merged. Follows `Plan::decide` (the test model): `enosys` first, then
/// `always`, then the conditional rules; `EPERM` for the rest up to `max_known`; `ENOSYS`
/// above.
fn ranges<'a>(plan: &'a Plan) -> Result<Vec<Range<'a>>, SeccompError> {
    let max_known = u32::try_from(plan.max_known)
        .ok()
        .filter(|&n| n < u32::MAX)
        .ok_or(SeccompError::NumberOutOfRange {
            number: plan.max_known,
        })?;
    let mut out: Vec<Range<'a>> = Vec::new();
    let mut push = |start: u32, leaf: Leaf<'a>| {
        let merge = matches!(
            (out.last().map(|range| range.leaf), leaf),
            (Some(Leaf::Ret(a)), Leaf::Ret(b)) if a == b
        );
        if !merge {
            out.push(Range { start, leaf });
        }
    };
    for nr in 0..=max_known {
        let key = i64::from(nr);
        let leaf = if plan.enosys.contains(&key) {
            Leaf::Ret(RET_ENOSYS)
        } else if plan.always.contains(&key) {
            Leaf::Ret(RET_ALLOW)
        } else if let Some(checks) = plan.conditional.get(&key) {
            Leaf::Checks(checks)
        } else {
            Leaf::Ret(RET_EPERM)
        };
        push(nr, leaf);
    }
    push(max_known + 1, Leaf::Ret(RET_ENOSYS));
    Ok(out)
}

/// The return instructions of one chunk, emitted after its code when first asked for.
#[derive(Debug, Default)]
struct Returns(Vec<(u32, Label)>);

impl Returns {
    fn get(&mut self, asm: &mut Asm, action: u32) -> Label {
        if let Some(&(_, label)) = self.0.iter().find(|(a, _)| *a == action) {
            return label;
        }
        let label = asm.label();
        self.0.push((action, label));
        label
    }

    fn emit(self, asm: &mut Asm) {
        for (action, label) in self.0 {
            asm.place(label);
            asm.stmt(RET_K, action);
        }
    }
}

/// `args[arg]`'s low (`high == false`) or high 32 bits (x86_64 is little-endian).
fn arg_word(arg: u8, high: bool) -> u32 {
    DATA_ARGS + 8 * u32::from(arg) + if high { 4 } else { 0 }
}

/// Argument checks of one conditional syscall: allow when any holds, else `EPERM`.
/// The accumulator holds the syscall number on entry; both outcomes return.
fn emit_checks(asm: &mut Asm, rets: &mut Returns, checks: &[ArgCheck]) {
    let allow = rets.get(asm, RET_ALLOW);
    let eperm = rets.get(asm, RET_EPERM);
    // The argument word the accumulator holds unchanged, to skip reloading it.
    let mut loaded: Option<u32> = None;
    let load = |asm: &mut Asm, word: u32, loaded: &mut Option<u32>| {
        if *loaded != Some(word) {
            asm.stmt(LD_W_ABS, word);
            *loaded = Some(word);
        }
    };
    for (i, &check) in checks.iter().enumerate() {
        let last = i + 1 == checks.len();
        let fail = if last { eperm } else { asm.label() };
        match check {
            ArgCheck::Eq32 { arg, value } => {
                load(asm, arg_word(arg, false), &mut loaded);
                asm.jump(JEQ_K, value, allow, fail);
            }
            ArgCheck::Ne32 { arg, value } => {
                load(asm, arg_word(arg, false), &mut loaded);
                asm.jump(JEQ_K, value, fail, allow);
            }
            ArgCheck::MaskedZero { arg, mask } => {
                let halves: Vec<(bool, u32)> = [(false, mask as u32), (true, (mask >> 32) as u32)]
                    .into_iter()
                    .filter(|&(_, m)| m != 0)
                    .collect();
                if halves.is_empty() {
                    asm.ops.push(Op::Always(allow));
                }
                for (j, &(high, m)) in halves.iter().enumerate() {
                    let pass = if j + 1 == halves.len() {
                        allow
                    } else {
                        asm.label()
                    };
                    asm.stmt(LD_W_ABS, arg_word(arg, high));
                    asm.stmt(ALU_AND_K, m);
                    asm.jump(JEQ_K, 0, pass, fail);
                    if pass != allow {
                        asm.place(pass);
                    }
                }
                loaded = None;
            }
        }
        if !last {
            asm.place(fail);
        }
    }
}

/// The binary search over `ranges` (non-empty, sorted), entered at the current position
/// with the syscall number in the accumulator. Ranges that only return jump straight to
/// the chunk's shared return instructions.
fn emit_search(asm: &mut Asm, rets: &mut Returns, ranges: &[Range<'_>]) {
    match ranges {
        [] => {}
        [
            Range {
                leaf: Leaf::Ret(action),
                ..
            },
        ] => asm.stmt(RET_K, *action),
        [
            Range {
                leaf: Leaf::Checks(checks),
                ..
            },
        ] => emit_checks(asm, rets, checks),
        _ => {
            let (low, high) = ranges.split_at(ranges.len() / 2);
            let mut target = |asm: &mut Asm, side: &[Range<'_>]| match side {
                [
                    Range {
                        leaf: Leaf::Ret(action),
                        ..
                    },
                ] => (rets.get(asm, *action), false),
                _ => (asm.label(), true),
            };
            let (high_at, high_code) = target(asm, high);
            let (low_at, low_code) = target(asm, low);
            asm.jump(JGE_K, high[0].start, high_at, low_at);
            if low_code {
                asm.place(low_at);
                emit_search(asm, rets, low);
            }
            if high_code {
                asm.place(high_at);
                emit_search(asm, rets, high);
            }
        }
    }
}

/// [`emit_search`] cut into chunks short enough for 8-bit jumps: a subtree that fits in
/// [`CHUNK_INSNS`] with its return instructions is one chunk; a larger one is split at its
/// middle, with a `ja` trampoline when the lower half is too long to jump over.
fn emit_tree(asm: &mut Asm, ranges: &[Range<'_>]) {
    let start = asm.ops.len();
    let mut rets = Returns::default();
    emit_search(asm, &mut rets, ranges);
    rets.emit(asm);
    if asm.insns_since(start) <= CHUNK_INSNS || ranges.len() < 2 {
        return;
    }
    asm.ops.truncate(start);
    let (low, high) = ranges.split_at(ranges.len() / 2);
    let (high_at, low_at) = (asm.label(), asm.label());
    let jge = asm.ops.len();
    asm.jump(JGE_K, high[0].start, high_at, low_at);
    asm.place(low_at);
    let low_start = asm.ops.len();
    emit_tree(asm, low);
    if asm.insns_since(low_start) > usize::from(u8::MAX) {
        let bridge = asm.label();
        asm.ops[jge] = Op::Jump {
            code: JGE_K,
            k: high[0].start,
            jt: bridge,
            jf: low_at,
        };
        asm.ops
            .splice(jge + 1..jge + 1, [Op::Place(bridge), Op::Always(high_at)]);
    }
    asm.place(high_at);
    emit_tree(asm, high);
}

/// The program for `plan`: the arch check, then the search tree over [`ranges`]. Fails if
/// it exceeds the kernel's `BPF_MAXINSNS` ([`SeccompError::TooLong`]) or, a bug here, if a
/// jump cannot be encoded.
pub(super) fn build(plan: &Plan) -> Result<BpfProgram, SeccompError> {
    let mut asm = Asm::default();
    let native = asm.label();
    asm.stmt(LD_W_ABS, DATA_ARCH);
    let kill = asm.label();
    asm.jump(JEQ_K, AUDIT_ARCH_X86_64, native, kill);
    asm.place(kill);
    asm.stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.place(native);
    asm.stmt(LD_W_ABS, DATA_NR);
    emit_tree(&mut asm, &ranges(plan)?);
    let program = asm.assemble()?;
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLong {
            insns: program.len(),
        });
    }
    Ok(program)
}

/// Runs `program` on a `seccomp_data` for system call `nr` of `arch` with `args`, as the
/// kernel would for the opcodes this compiler emits (and `jgt`): the `SECCOMP_RET_*` value and
/// the number of instructions executed. The tests' model of the kernel.
#[cfg(test)]
pub(super) fn run(program: &[sock_filter], arch: u32, nr: i64, args: &[u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let ins = &program[pc];
        pc += 1;
        steps += 1;
        let cond = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
        match ins.code {
            LD_W_ABS => {
                let at = ins.k as usize;
                acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
            }
            ALU_AND_K => acc &= ins.k,
            JA => pc += ins.k as usize,
            JEQ_K => pc += cond(acc == ins.k),
            JGT_K => pc += cond(acc > ins.k),
            JGE_K => pc += cond(acc >= ins.k),
            RET_K => return (ins.k, steps),
            other => panic!("unexpected BPF opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::plan::{Verdict, running_kernel};
    use crate::seccomp::testing::{cap_sets, docker_default_caps, probe_numbers, probes};
    use crate::seccomp::{SeccompProfile, compile};

    fn run_bpf(program: &[sock_filter], arch: u32, nr: i64, args: &[u64; 6]) -> u32 {
        run(program, arch, nr, args).0
    }

    fn verdict_code(v: Verdict) -> u32 {
        match v {
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | e as u32,
        }
    }

    /// Checks what the kernel's `seccomp_check_filter`/`bpf_check_classic` would, for the
    /// opcodes used here: length, known opcodes, aligned loads inside `seccomp_data`, every
    /// jump target inside the program, and a return at the end.
    fn assert_valid(program: &[sock_filter]) {
        assert!(
            !program.is_empty() && program.len() <= MAX_INSNS,
            "{} insns",
            program.len()
        );
        for (pc, ins) in program.iter().enumerate() {
            let next = pc + 1;
            match ins.code {
                LD_W_ABS => assert!(ins.k % 4 == 0 && ins.k < 64, "load {} at {pc}", ins.k),
                ALU_AND_K | RET_K => {}
                JA => assert!(
                    next + (ins.k as usize) < program.len(),
                    "ja out of range at {pc}"
                ),
                JEQ_K | JGE_K | JGT_K => {
                    let far = next + usize::from(ins.jt.max(ins.jf));
                    assert!(far < program.len(), "jump out of range at {pc}");
                }
                other => panic!("unexpected BPF opcode {other:#x} at {pc}"),
            }
        }
        assert_eq!(program.last().unwrap().code, RET_K, "must end in a return");
    }

    /// The program is a short binary search: few instructions, few executed per call,
    /// and valid for the kernel, for every capability set.
    #[test]
    fn compiled_program_is_a_short_valid_tree() {
        for (caps, strict) in cap_sets().iter().flat_map(|c| [(c, false), (c, true)]) {
            for kernel in [running_kernel(), Some((4, 4)), Some((6, 1))] {
                let plan = Plan::new(caps, kernel, strict).unwrap();
                let program = build(&plan).unwrap();
                assert_valid(&program);
                assert!(program.len() < 300, "{} insns for {caps:?}", program.len());
                let mut deepest = 0;
                for nr in probe_numbers() {
                    for args in &probes() {
                        deepest = deepest.max(run(&program, AUDIT_ARCH_X86_64, nr, args).1);
                    }
                }
                assert!(deepest < 40, "{deepest} insns executed for {caps:?}");
            }
        }
        let default = compile(SeccompProfile::Default, &docker_default_caps())
            .unwrap()
            .unwrap();
        assert!(default.len() < 300, "{} insns", default.len());
    }

    /// The chunking keeps every jump in range even when the tree is far larger than 256
    /// instructions (many alternating ranges, as a much bigger profile would give).
    #[test]
    fn large_trees_stay_valid() {
        let checks = [ArgCheck::Eq32 { arg: 0, value: 7 }];
        let ranges: Vec<Range<'_>> = (0..2000u32)
            .map(|n| Range {
                start: n,
                leaf: match n % 5 {
                    0 => Leaf::Ret(RET_ALLOW),
                    1 => Leaf::Ret(RET_EPERM),
                    2 => Leaf::Checks(&checks),
                    3 => Leaf::Ret(RET_ENOSYS),
                    _ => Leaf::Ret(libc::SECCOMP_RET_ERRNO | 99),
                },
            })
            .collect();
        let mut asm = Asm::default();
        asm.stmt(LD_W_ABS, DATA_NR);
        emit_tree(&mut asm, &ranges);
        let program = asm.assemble().unwrap();
        assert_valid(&program);
        assert!(
            program.len() > 4 * usize::from(u8::MAX),
            "{} insns",
            program.len()
        );
        for n in (0..2000u32).step_by(7).chain([1999, 2000, u32::MAX]) {
            let last = ranges[n.min(1999) as usize];
            for arg in [7u64, 8] {
                let want = match last.leaf {
                    Leaf::Ret(r) => r,
                    Leaf::Checks(_) if arg == 7 => RET_ALLOW,
                    Leaf::Checks(_) => RET_EPERM,
                };
                let got = run_bpf(
                    &program,
                    AUDIT_ARCH_X86_64,
                    i64::from(n),
                    &[arg, 0, 0, 0, 0, 0],
                );
                assert_eq!(got, want, "nr {n} arg {arg}");
            }
        }
    }

    /// The compiled BPF agrees with the plan for
    /// every syscall number and a spread of arguments, for several capability sets.
    #[test]
    fn compiled_program_matches_plan() {
        let probes = probes();
        for (caps, strict) in cap_sets().iter().flat_map(|c| [(c, false), (c, true)]) {
            let plan = Plan::new(caps, running_kernel(), strict).unwrap();
            let program = build(&plan).unwrap();
            for nr in probe_numbers() {
                for args in &probes {
                    let want = verdict_code(plan.decide(nr, args));
                    let got = run_bpf(&program, AUDIT_ARCH_X86_64, nr, args);
                    assert_eq!(
                        got, want,
                        "nr {nr} args {args:x?} caps {caps:?} strict {strict}"
                    );
                }
            }
            let i386 = 3 | 0x4000_0000; // AUDIT_ARCH_I386
            assert_eq!(
                run_bpf(&program, i386, 0, &[0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }
}
