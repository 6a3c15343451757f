"""tools/profile_step.py: the kernel-by-kernel breakdown of the bench's training steps."""
import functools
import os
import re

import pytest
from _tools import load_tool, run_tool

_run = functools.partial(run_tool, "profile_step.py")


def _module():
    return load_tool("profile_step")


# A hand-written program text in XLA's format: an Eigen dot, a YNNPACK fusion around a dot, a
# fused transpose, an elementwise fusion and the while loop that holds them.
HLO = """\
%fused_computation.2 (param_0.2: f32[12,8], param_1.2: f32[6,8]) -> f32[12,6] {
  %param_0.2 = f32[12,8]{1,0} parameter(0)
  %param_1.2 = f32[6,8]{1,0} parameter(1)
  ROOT %dot_general.40 = f32[12,6]{1,0} dot(%param_0.2, %param_1.2), lhs_contracting_dims={1}, rhs_contracting_dims={1}
}

%body (p: (f32[12,8], f32[6,8])) -> (f32[12,8], f32[6,8]) {
  %a = f32[12,8]{1,0} parameter(0)
  %w = f32[6,8]{1,0} parameter(1)
  %dot_general.37 = f32[8,6]{1,0} dot(%a, %y), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  %ynn_fusion.2 = f32[12,6]{1,0} fusion(%a, %w), kind=kCustom, calls=%fused_computation.2, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
  %transpose_copy_fusion.3 = f32[8,12]{1,0} fusion(%a), kind=kLoop, calls=%fused_computation.3
  %add_select_fusion = f32[6,8]{1,0} fusion(%w), kind=kLoop, calls=%fused_computation.4
  %fusion.7 = f32[8,12]{1,0} fusion(%a), kind=kLoop, calls=%fused_computation.7
  %dot_fusion.5 = (f32[12,6]{1,0}, f32[6]{0}) fusion(%a, %w), kind=kOutput, calls=%fused_computation.5
  %y = f32[12,6]{1,0} add(%ynn_fusion.2, %ynn_fusion.2)
}

%fused_computation.7 (param_0.7: f32[12,8]) -> f32[8,12] {
  %param_0.7 = f32[12,8]{1,0} parameter(0)
  ROOT %transpose.3 = f32[8,12]{0,1} transpose(%param_0.7), dimensions={1,0}
}

%fused_computation.5 (param_0.5: f32[12,8], param_1.5: f32[6,8]) -> (f32[12,6], f32[6]) {
  %param_0.5 = f32[12,8]{1,0} parameter(0)
  %param_1.5 = f32[6,8]{1,0} parameter(1)
  %dot.9 = f32[12,6]{1,0} dot(%param_0.5, %param_1.5), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  ROOT %tuple.2 = (f32[12,6]{1,0}, f32[6]{0}) tuple(%dot.9, %reduce.1)
}

ENTRY %main (x: f32[12,8]) -> f32[12,8] {
  %x = f32[12,8]{1,0} parameter(0)
  %while.1 = (f32[12,8], f32[6,8]) while(%t), condition=%cond, body=%body
}
"""


@pytest.mark.parametrize("name,group,flops", [
    ("dot_general.37", "GEMM (Eigen)", 2 * 8 * 6 * 12),        # contracted over a's 12 rows
    ("ynn_fusion.2", "GEMM (YNNPACK)", 2 * 12 * 6 * 8),         # the fused dot's FLOPs
    ("transpose_copy_fusion.3", "transposes and copies", None),
    ("add_select_fusion", "elementwise and reductions", None),
    ("fusion.7", "transposes and copies", None),                  # by its result, not its name
    ("dot_fusion.5", "GEMM (XLA fused)", 2 * 12 * 6 * 8),          # a tuple-shaped output fusion
    ("while.1", None, None),                                     # the loop around the kernels
    ("ThunkExecutor::Execute", None, None),                      # the profiler's own events
])
def test_every_kernel_lands_in_its_group_with_its_flops(name, group, flops):
    mod = _module()
    instr, comps = mod._instructions(HLO)
    assert {"while.1", "dot_fusion.5", "tuple.2"} <= set(instr)     # tuple shapes are read too
    assert mod.classify(name, instr, comps) == (group, flops)


@pytest.mark.e2e(cpu=60)
def test_each_workload_prints_its_groups_and_gemms():
    """Every workload at smoke size, one timed and one traced call: a positive wall time, every
    group's row, shares summing to 100 %, GEMM kernels found and a GEMM rate printed, the
    longest other kernels listed with their groups."""
    mod = _module()
    r = _run("--quick", "--rounds", "1", "--traced", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("mlp500", "cnn3", "transformer"):
        block = r.stdout.split(f"\n{name}: ")[1].split("\n\n")[0]
        assert float(re.match(r"wall ([\d,.]+) µs", block).group(1).replace(",", "")) > 0, block
        rows = {g: re.search(rf"^  {re.escape(g)}\s+([\d.]+)\s+(\d+)\s+([\d.]+)%$", block, re.M) for g in mod.GROUPS}
        assert all(rows.values()), block
        assert abs(sum(float(m.group(3)) for m in rows.values()) - 100) < 0.6, block
        # YNNPACK runs every workload's forward products; on a CPU the transformer's weight
        # gradients too (fast_grads), so it has no Eigen product left
        assert float(rows["GEMM (YNNPACK)"].group(1)) > 0, block
        if name == "transformer":
            assert float(rows["GEMM (Eigen)"].group(1)) == 0, block
        wall, kernels = (float(v.replace(",", "")) for v in
                         re.match(r"wall ([\d,.]+) µs per step; kernels ([\d,.]+) µs", block).groups())
        assert 0.2 * wall < kernels < 1.5 * os.cpu_count() * wall, block   # no event lost or counted twice
        assert re.search(r"^    (YNNPACK|Eigen) f32\[[\d,]+\]\s+[\d.]+\s+\d+\s+[\d.]+", block, re.M), block
        # the longest non-GEMM kernels, each with its instruction, shape, time and group
        others = block.split("longest other kernels")[1].splitlines()[1:]
        assert others and all(re.match(r"^    \S+ \S+.*\s[\d.]+\s+\d+  (transposes|elementwise|small)", ln)
                              for ln in others), block
    assert re.search(r"^in-run float32 matmul peak \d+ GFLOP/s$", r.stdout, re.M), r.stdout[:2000]


@pytest.mark.parametrize("args,message", [(["--only", "e5"], "--only takes"),
                                          (["--rounds", "0"], "must be at least 1")])
def test_bad_arguments_are_named(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
