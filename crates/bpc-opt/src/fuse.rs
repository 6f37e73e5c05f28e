//! Fusion: grouping values into kernels, and the schedule that makes each group contiguous.
//!
//! Groups are formed greedily, the most specific first, and are always *convex* (no path
//! leaves a group and comes back), so each can run as one loop nest at one point:
//!
//! 1. **rows**: around each `cross_entropy`/`softmax` of batched logits `z`, everything
//!    row-wise over the same rows: `z`'s elementwise producer (the bias add after the
//!    product), the loss and its batch mean, the softmax output, and the gradient
//!    `(softmax(z) − onehot(y))·c` with its sum over the batch and that sum's SGD update:
//!    softmax cross-entropy and its gradient in one pass over the logits.
//! 2. **reduce**: a sum/mean/max/min with the elementwise chain that feeds only it and the
//!    elementwise chain it alone feeds (the mean's division, `b − lr·db`).
//! 3. **map**: elementwise chains of one type (`relu(a*b + c)` is one kernel), including a
//!    matrix product whose contracted axis is short (`k ≤ 16`, e.g. `dY·W2` over 10 classes)
//!    inlined as a dot product, so the relu mask and that product land in one kernel.
//! 4. **gemm**: `W − c·(A·B)` (an SGD update of a weight gradient) and `A·B + μ·buf` (a
//!    momentum buffer's update) are the GEMM's own alpha/beta written over `W` or `buf`,
//!    when every other reader of it precedes the product.
//!
//! The schedule is a topological order of groups and single values that keeps program
//! order where it can, except that weight gradients (products that contract the batch axis)
//! run as soon as their operands exist, which ends the activation's life early. Updates of a
//! param run after every other reader of it, so code generation may write them in place.

use std::collections::{BTreeSet, BinaryHeap};

use bpc_ir::{BinaryOp, Function, Inst, Kernel, KernelKind, Output, ReduceOp, Value};

/// The longest contracted axis of a product inlined into an elementwise kernel.
pub const MAX_INLINE_K: usize = 16;

/// Groups `func`'s values into fused kernels, reorders them so every group is a contiguous
/// run, and sets `kernels`. Values and results are unchanged (renumbered).
pub fn fuse(func: &Function) -> Function {
    let mut g = Grouping::new(func);
    for v in func.values() {
        if matches!(func.inst(v), Inst::CrossEntropy { .. } | Inst::Softmax { .. }) {
            g.rows(v);
        }
    }
    for v in func.values().rev() {
        if let Inst::Reduce { op: ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min, .. } = func.inst(v) {
            g.reduce(v);
        }
    }
    for v in func.values().rev() {
        if elementwise(func.inst(v)) {
            g.map(v);
        }
    }
    g.gemm_updates();
    let order = g.schedule();
    rebuild(func, &g, &order)
}

fn elementwise(inst: &Inst) -> bool {
    matches!(inst, Inst::Unary { .. } | Inst::Binary { .. } | Inst::Select { .. })
}

/// Free members: constants and views, which cost nothing on their own.
fn free(inst: &Inst) -> bool {
    matches!(inst, Inst::Const(_) | Inst::BatchSize | Inst::Broadcast { .. } | Inst::Reshape { .. })
}

struct Grouping<'f> {
    f: &'f Function,
    users: Vec<Vec<Value>>,
    result: Vec<bool>,
    group: Vec<Option<usize>>,
    groups: Vec<(KernelKind, BTreeSet<Value>)>,
}

impl<'f> Grouping<'f> {
    fn new(f: &'f Function) -> Grouping<'f> {
        let mut users = vec![Vec::new(); f.len()];
        for v in f.values() {
            for o in f.inst(v).operands() {
                if !users[o.index()].contains(&v) {
                    users[o.index()].push(v);
                }
            }
        }
        let mut result = vec![false; f.len()];
        for r in &f.results {
            result[r.value.index()] = true;
        }
        Grouping { f, users, result, group: vec![None; f.len()], groups: Vec::new() }
    }

    /// Whether `v` depends on a member of `set` through a value outside it (adding `v` to
    /// `set` would then break convexity).
    fn depends_on(&self, v: Value, set: &BTreeSet<Value>) -> bool {
        let Some(&first) = set.first() else { return false };
        if v.index() <= first.index() {
            return false;
        }
        let mut dep = vec![false; v.index() + 1];
        for w in (first.index()..v.index()).map(|i| Value(i as u32)) {
            dep[w.index()] = set.contains(&w) || self.f.inst(w).operands().iter().any(|o| dep[o.index()]);
        }
        self.f.inst(v).operands().iter().any(|o| !set.contains(o) && dep[o.index()])
    }

    fn all_users_in(&self, v: Value, set: &BTreeSet<Value>) -> bool {
        !self.users[v.index()].is_empty() && self.users[v.index()].iter().all(|u| set.contains(u))
    }

    fn free_to_join(&self, v: Value, set: &BTreeSet<Value>) -> bool {
        self.group[v.index()].is_none() && !set.contains(&v) && !self.depends_on(v, set)
    }

    /// Adds producers of `set`'s members that `admit` accepts and whose users are all in
    /// `set` (results only if `results` allows), until nothing changes.
    fn grow_producers(&self, set: &mut BTreeSet<Value>, results: bool, admit: &dyn Fn(Value) -> bool) {
        loop {
            let cands: Vec<Value> = set.iter().flat_map(|&m| self.f.inst(m).operands()).collect();
            let before = set.len();
            for o in cands {
                if self.free_to_join(o, set)
                    && (results || !self.result[o.index()])
                    && self.all_users_in(o, set)
                    && admit(o)
                {
                    set.insert(o);
                }
            }
            if set.len() == before {
                return;
            }
        }
    }

    fn commit(&mut self, kind: KernelKind, set: BTreeSet<Value>) {
        let computing = set.iter().filter(|&&v| !free(self.f.inst(v))).count();
        if computing < 2 {
            return;
        }
        let id = self.groups.len();
        for &v in &set {
            self.group[v.index()] = Some(id);
        }
        self.groups.push((kind, set));
        // Two groups can each be convex and still need each other first: then drop this one.
        if self.has_cycle() {
            let (_, set) = self.groups.pop().expect("just pushed");
            for v in set {
                self.group[v.index()] = None;
            }
        }
    }

    /// The node of `v` in the graph of groups and single values.
    fn node(&self, v: Value) -> usize {
        self.group[v.index()].unwrap_or(self.groups.len() + v.index())
    }

    /// Whether the graph whose nodes are the groups and the ungrouped values has a cycle.
    fn has_cycle(&self) -> bool {
        let total = self.groups.len() + self.f.len();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); total];
        for v in self.f.values() {
            for o in self.f.inst(v).operands() {
                let (a, b) = (self.node(o), self.node(v));
                if a != b {
                    succs[a].push(b);
                }
            }
        }
        reaches_cycle(&succs)
    }

    /// Row-wise work around a cross-entropy or softmax of batched logits `z`.
    fn rows(&mut self, seed: Value) {
        let f = self.f;
        let z = match f.inst(seed) {
            Inst::CrossEntropy { logits, .. } => *logits,
            Inst::Softmax { arg, axis, .. } if *axis + 1 == f.shape(*arg).rank() => *arg,
            _ => return,
        };
        let zs = f.shape(z);
        if self.group[seed.index()].is_some() || !zs.batch || zs.rank() != 2 {
            return;
        }
        let row_op = |v: Value| -> bool {
            match f.inst(v) {
                Inst::CrossEntropy { logits, .. } => *logits == z,
                Inst::Softmax { arg, .. } => *arg == z,
                Inst::Reduce { arg, axes, op } => {
                    let s = f.shape(*arg);
                    s.batch && s.rank() <= 2 && axes[..] == [0] && *op != ReduceOp::LogSumExp
                }
                Inst::OneHot { .. } => f.shape(v).rank() == 2,
                inst => elementwise(inst) || free(inst),
            }
        };
        // Every softmax and cross-entropy of `z`, and `z` itself when elementwise (stored
        // if something else reads it, e.g. the `logits` result).
        let mut set: BTreeSet<Value> = self.users[z.index()].iter().copied().filter(|&u| row_op(u)).collect();
        set.retain(|&u| matches!(f.inst(u), Inst::CrossEntropy { .. } | Inst::Softmax { .. }));
        if elementwise(f.inst(z)) && self.group[z.index()].is_none() {
            set.insert(z);
        }
        loop {
            let before = set.len();
            // Consumers whose operands are members or independent of the group.
            for v in f.values().skip(seed.index().min(z.index())) {
                if self.group[v.index()].is_none()
                    && !set.contains(&v)
                    && row_op(v)
                    && f.inst(v).operands().iter().any(|o| set.contains(o))
                    && !self.depends_on(v, &set)
                {
                    set.insert(v);
                }
            }
            self.grow_producers(&mut set, true, &|o| row_op(o) || o == z && elementwise(f.inst(o)));
            if set.len() == before {
                break;
            }
        }
        self.commit(KernelKind::Rows, set);
    }

    /// A reduction with its elementwise producer and epilogue.
    fn reduce(&mut self, r: Value) {
        let f = self.f;
        if self.group[r.index()].is_some() {
            return;
        }
        let Inst::Reduce { arg, .. } = f.inst(r) else { return };
        let in_ty = f.ty(*arg).clone();
        let mut set = BTreeSet::from([r]);
        self.grow_producers(&mut set, false, &|o| free(f.inst(o)) || elementwise(f.inst(o)) && *f.ty(o) == in_ty);
        // The epilogue: while the tail has exactly one user, elementwise of the same type.
        let mut tail = r;
        while !self.result[tail.index()] {
            let [u] = self.users[tail.index()][..] else { break };
            if !elementwise(f.inst(u)) || f.ty(u) != f.ty(r) || !self.free_to_join(u, &set) {
                break;
            }
            set.insert(u);
            tail = u;
        }
        self.grow_producers(&mut set, false, &|o| free(f.inst(o)));
        self.commit(KernelKind::Reduce, set);
    }

    /// An elementwise chain ending at `v`.
    fn map(&mut self, v: Value) {
        let f = self.f;
        if self.group[v.index()].is_some() {
            return;
        }
        let ty = f.ty(v).clone();
        let mut set = BTreeSet::from([v]);
        self.grow_producers(&mut set, false, &|o| match f.inst(o) {
            Inst::MatMul { lhs, ta, .. } => *f.ty(o) == ty && contracted(f, *lhs, *ta) <= MAX_INLINE_K,
            inst => (elementwise(inst) && *f.ty(o) == ty) || free(inst),
        });
        self.commit(KernelKind::Map, set);
    }

    /// Map groups `sub(W, mul(broadcast(c), A·B))` (an SGD step) and `add(A·B, mul(broadcast(c),
    /// W))` (a momentum buffer `μ·buf + g`) become GEMM groups (`alpha`/`beta`) when every
    /// reader of `W` outside the group is an ancestor of the product (so the GEMM can write
    /// `W` in place as soon as its operands exist).
    fn gemm_updates(&mut self) {
        let f = self.f;
        for id in 0..self.groups.len() {
            let (kind, set) = &self.groups[id];
            if *kind != KernelKind::Map || set.len() != 3 {
                continue;
            }
            let Some(&root) = set.last() else { continue };
            let Some((w, c, m)) = gemm_update_parts(f, root) else { continue };
            let (Inst::Broadcast { arg: scalar, .. }, Inst::MatMul { .. }, Inst::Arg(_)) =
                (f.inst(c), f.inst(m), f.inst(w))
            else {
                continue;
            };
            // The coefficient is one number (a GEMM scale), not a broadcast vector.
            if f.shape(*scalar).len(1) != 1 || f.shape(*scalar).batch {
                continue;
            }
            if !set.contains(&c) || self.group[m.index()].is_some() || self.users[m.index()].len() != 1 {
                continue;
            }
            let ancestors = self.ancestors(m);
            if self.users[w.index()].iter().all(|&u| set.contains(&u) || ancestors[u.index()]) {
                self.group[m.index()] = Some(id);
                self.groups[id].0 = KernelKind::Gemm;
                self.groups[id].1.insert(m);
            }
        }
    }

    fn ancestors(&self, v: Value) -> Vec<bool> {
        let mut anc = vec![false; self.f.len()];
        let mut stack = vec![v];
        while let Some(w) = stack.pop() {
            for o in self.f.inst(w).operands() {
                if !anc[o.index()] {
                    anc[o.index()] = true;
                    stack.push(o);
                }
            }
        }
        anc
    }

    /// A topological order of nodes (groups and single values), each node's members in
    /// program order.
    fn schedule(&self) -> Vec<Value> {
        let f = self.f;
        let n = f.len();
        // Node ids: groups first, then one per ungrouped value.
        let ng = self.groups.len();
        let node = |v: Value| self.group[v.index()].unwrap_or(ng + v.index());
        let members = |id: usize| -> Vec<Value> {
            if id < ng { self.groups[id].1.iter().copied().collect() } else { vec![Value((id - ng) as u32)] }
        };
        let total = ng + n;
        let mut preds: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); total];
        for v in f.values() {
            for o in f.inst(v).operands() {
                if node(o) != node(v) {
                    preds[node(v)].insert(node(o));
                }
            }
        }
        // An update runs after every other reader of its param (unless that reader needs
        // the update first: then code generation copies instead of writing in place).
        for r in &f.results {
            let Some(p) = r.update else { continue };
            for w in f.values().filter(|&w| *f.inst(w) == Inst::Arg(p)) {
                for &u in &self.users[w.index()] {
                    let (a, b) = (node(u), node(r.value));
                    if a != b && !preds[b].contains(&a) {
                        preds[b].insert(a);
                        if cyclic(&preds) {
                            preds[b].remove(&a);
                        }
                    }
                }
            }
        }
        // Keys: program order, except that weight gradients (and GEMM groups) go early.
        let mut key = vec![0.0f64; total];
        let mut done = vec![false; total];
        let asap = |id: usize| -> bool {
            members(id).iter().any(|&m| match f.inst(m) {
                Inst::MatMul { lhs, rhs, .. } => !f.shape(m).batch && (f.shape(*lhs).batch || f.shape(*rhs).batch),
                _ => false,
            })
        };
        let mut heap = BinaryHeap::new();
        let mut waiting: Vec<usize> = (0..total).map(|id| preds[id].len()).collect();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); total];
        for (id, ps) in preds.iter().enumerate() {
            for &p in ps {
                succs[p].push(id);
            }
        }
        let live = |id: usize| id < ng || self.group[id - ng].is_none();
        let base_key = |id: usize| members(id).iter().map(|m| m.index()).max().unwrap_or(0) as f64;
        let mut order = Vec::with_capacity(n);
        for id in (0..total).filter(|&id| live(id) && waiting[id] == 0) {
            key[id] = base_key(id);
            heap.push((std::cmp::Reverse(Key(key[id])), id));
        }
        while let Some((_, id)) = heap.pop() {
            if done[id] {
                continue;
            }
            done[id] = true;
            order.extend(members(id));
            for &s in &succs[id] {
                waiting[s] -= 1;
                if waiting[s] == 0 && live(s) {
                    // A weight gradient runs as soon as it can.
                    key[s] = if asap(s) { f64::NEG_INFINITY } else { base_key(s) };
                    heap.push((std::cmp::Reverse(Key(key[s])), s));
                }
            }
        }
        assert_eq!(order.len(), n, "internal error: fusion groups are not convex");
        order
    }
}

/// Whether the graph given by successor lists has a cycle (iterative three-colour DFS).
fn reaches_cycle(succs: &[Vec<usize>]) -> bool {
    let mut colour = vec![0u8; succs.len()];
    for start in 0..succs.len() {
        if colour[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        colour[start] = 1;
        while let Some(&mut (n, ref mut i)) = stack.last_mut() {
            if let Some(&m) = succs[n].get(*i) {
                *i += 1;
                match colour[m] {
                    0 => {
                        colour[m] = 1;
                        stack.push((m, 0));
                    }
                    1 => return true,
                    _ => {}
                }
            } else {
                colour[n] = 2;
                stack.pop();
            }
        }
    }
    false
}

/// Whether predecessor sets have a cycle.
fn cyclic(preds: &[BTreeSet<usize>]) -> bool {
    let mut succs = vec![Vec::new(); preds.len()];
    for (n, ps) in preds.iter().enumerate() {
        for &p in ps {
            succs[p].push(n);
        }
    }
    reaches_cycle(&succs)
}

/// `(W, broadcast c, A·B)` of `W − c·(A·B)` or `A·B + c·W` (either operand order of the add).
fn gemm_update_parts(f: &Function, root: Value) -> Option<(Value, Value, Value)> {
    let scaled = |x: Value| match *f.inst(x) {
        Inst::Binary { op: BinaryOp::Mul, lhs, rhs } => Some((lhs, rhs)),
        _ => None,
    };
    match *f.inst(root) {
        Inst::Binary { op: BinaryOp::Sub, lhs: w, rhs } => scaled(rhs).map(|(c, m)| (w, c, m)),
        Inst::Binary { op: BinaryOp::Add, lhs, rhs } => {
            let (m, scaled_w) = if matches!(f.inst(lhs), Inst::MatMul { .. }) { (lhs, rhs) } else { (rhs, lhs) };
            scaled(scaled_w).map(|(c, w)| (w, c, m))
        }
        _ => None,
    }
}

/// The contracted extent of a product whose left operand is `lhs` (transposed if `ta`).
fn contracted(f: &Function, lhs: Value, ta: bool) -> usize {
    let sizes = f.shape(lhs).sizes(usize::MAX);
    if ta { sizes[0] } else { sizes[1] }
}

/// An `f64` ordered for the heap (keys are never NaN).
#[derive(PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The function in `order`, renumbered, with the groups as kernels.
fn rebuild(func: &Function, g: &Grouping, order: &[Value]) -> Function {
    let mut out = Function::new(func.name.clone());
    out.args = func.args.clone();
    let mut new = vec![Value(0); func.len()];
    for &v in order {
        let mut inst = func.inst(v).clone();
        inst.map_operands(|o| new[o.index()]);
        new[v.index()] = out.push_typed(inst, func.ty(v).clone(), func.span(v));
    }
    out.results = func.results.iter().map(|r| Output { value: new[r.value.index()], ..r.clone() }).collect();
    out.names = func.names.iter().map(|(n, v)| (n.clone(), new[v.index()])).collect();
    out.adjoint_start = func.adjoint_start.and_then(|s| func.values().skip(s.index()).map(|v| new[v.index()]).min());
    let mut kernels: Vec<Kernel> = g
        .groups
        .iter()
        .map(|(kind, set)| {
            let mut values: Vec<Value> = set.iter().map(|v| new[v.index()]).collect();
            values.sort();
            Kernel { kind: *kind, values }
        })
        .collect();
    kernels.sort_by_key(|k| k.values[0]);
    out.kernels = Some(kernels);
    out
}
