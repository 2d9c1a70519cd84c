"""TorchScript and torch.export of modules that call torch.ops.brain.*: scripted in Python,
saved, loaded by a C++ program (`brain script`, torch::jit::load) and run there with the same
result (SPEC section 6)."""

import os
import subprocess

import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain._cli import TOOL


class ProjectionStep(torch.nn.Module):
    """One step of a spiking projection: JIT and CSR propagation, then a leaky state."""

    def __init__(self, n_pre: int, n_post: int):
        super().__init__()
        self.n_pre, self.n_post = n_pre, n_post
        self.weight = torch.nn.Parameter(torch.tensor([0.0, 0.5], dtype=torch.float64))
        g = torch.Generator().manual_seed(3)
        rows = torch.randint(0, n_pre, (200,), generator=g)
        cols = torch.randint(0, n_post, (200,), generator=g)
        indptr, indices, perm = torch.ops.brain.csr_from_coo(rows, cols, [n_pre, n_post])
        self.register_buffer("indptr", indptr)
        self.register_buffer("indices", indices)
        self.register_buffer("values", torch.rand(200, generator=g, dtype=torch.float64)[perm])

    def forward(self, spikes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        jit = torch.ops.brain.event_jitc_matmul(spikes, self.weight, 0.1, 42,
                                                [self.n_pre, self.n_post], "normal", True)
        csr = torch.ops.brain.event_csr_matmul(self.indptr, self.indices, self.values, spikes,
                                               [self.n_pre, self.n_post], True)
        return 0.9 * v + jit + csr


def example_inputs():
    g = torch.Generator().manual_seed(5)
    spikes = torch.rand(4, 60, generator=g) < 0.2
    v = torch.randn(4, 40, generator=g, dtype=torch.float64)
    return spikes, v


def brain_tool():
    # The C++ tool inside the installed package (what the `brain` console script runs).
    assert os.access(TOOL, os.X_OK), f"the packaged command-line tool is missing: {TOOL}"
    return TOOL


def test_scripted_module_runs_in_cpp_with_the_same_result(tmp_path):
    module = ProjectionStep(60, 40)
    scripted = torch.jit.script(module)
    inputs = example_inputs()
    expected = module(*inputs)
    torch.testing.assert_close(scripted(*inputs), expected, rtol=0, atol=0)

    model_path, in_path, out_path = tmp_path / "step.pt", tmp_path / "in.pt", tmp_path / "out.pt"
    scripted.save(str(model_path))
    torch.save(inputs, in_path)
    run = subprocess.run([brain_tool(), "script", str(model_path), "--inputs", str(in_path),
                          "--out", str(out_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "tensor [4, 40] Double" in run.stdout
    got = torch.load(out_path)
    torch.testing.assert_close(got, expected.detach(), rtol=0, atol=0)


def test_script_command_rejects_bad_usage(tmp_path):
    tool = brain_tool()
    assert subprocess.run([tool, "script"], capture_output=True).returncode == 2
    assert subprocess.run([tool, "script", "a.pt", "--bogus"], capture_output=True).returncode == 2
    missing = subprocess.run([tool, "script", str(tmp_path / "missing.pt")], capture_output=True, text=True)
    assert missing.returncode == 1 and "error" in missing.stderr


def test_torch_export_of_the_same_module():
    module = ProjectionStep(60, 40)
    inputs = example_inputs()
    exported = torch.export.export(module, inputs)
    torch.testing.assert_close(exported.module()(*inputs), module(*inputs), rtol=0, atol=0)
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "brain.event_jitc_matmul.default" in targets
    assert "brain.event_csr_matmul.default" in targets
