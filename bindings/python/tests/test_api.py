"""The Python package on the shared models: the same bytes as the CLI, data from numpy and from
ONNX Runtime's CalibrationDataReader, ModelProto in and out, errors as documented exceptions.

Run by `scripts/test` after `pip install .` into the test venv; ../shared is read-only, outputs go
to pytest's temporary folders. Static runs leave the latency check off on both sides: with it on,
which op groups stay float is decided by timing on the machine (the CLI's golden test does the same).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import prunq

SHARED = Path(os.environ.get("PRUNQ_SHARED", Path(__file__).resolve().parents[4] / "shared"))
MODELS, DATA = SHARED / "models", SHARED / "data"
PRUNQ = [sys.executable, "-m", "prunq"]


def cli(*args: str) -> subprocess.CompletedProcess:
    """The `prunq` command of the installed wheel."""
    return subprocess.run([*PRUNQ, *map(str, args)], capture_output=True, text=True)


def cli_ok(*args: str) -> str:
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_static_quantize_from_numpy_writes_the_clis_bytes(tmp_path):
    model, calib = MODELS / "digits_cnn.onnx", DATA / "digits_calib.npz"
    cli_ok("quantize", model, "-o", tmp_path / "cli.onnx", "--mode", "static", "--calib", calib, "--no-latency-check")
    said = []
    result = prunq.quantize(
        model, tmp_path / "py.onnx", data=dict(np.load(calib)), mode="static", latency_check=False,
        progress=lambda event, text, n: said.append((event, text)),
    )
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    lines = [text for event, text in said if event == "say"]
    assert any(line.startswith("quality on ") and "rows of the calibration data" in line for line in lines), lines
    assert any(event == "start" for event, _ in said), "no progress reported"
    assert result.output == str(tmp_path / "py.onnx") and result.model_bytes is None
    assert result.report["mode"] == "static" and result.size_after < result.size_before
    assert result.to_dict()["tensors"] and '"tensors"' in result.to_json()
    assert "<html" in result._repr_html_().lower()


def test_structured_prune_writes_the_clis_bytes(tmp_path):
    model, calib = MODELS / "digits_cnn.onnx", DATA / "digits_calib.npz"
    cli_ok("prune", model, "-o", tmp_path / "cli.onnx", "--structured", "--target-macs", "0.5", "--calib", calib,
           "--no-latency-check")
    result = prunq.prune(model, tmp_path / "py.onnx", data=calib, structured=True, target_macs=0.5,
                         latency_check=False, quiet=True)
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    assert result.report, "a report"


def test_apply_replays_a_recipe_to_the_clis_bytes(tmp_path):
    model = MODELS / "digits_mlp.onnx"
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[step]]\nkind = "prune"\nsparsity = 0.5\n\n[[step]]\nkind = "quantize"\nmode = "dynamic"\n')
    cli_ok("apply", recipe, model, "-o", tmp_path / "cli.onnx", "--no-latency-check")
    prunq.apply(recipe, model, tmp_path / "py.onnx", latency_check=False, quiet=True)
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()


class OcrLines:
    """An ONNX Runtime CalibrationDataReader as users write them: one text line per get_next()."""

    def __init__(self, path: Path, input_name: str):
        self.lines = np.load(path)[input_name]
        self.input_name, self.i = input_name, 0

    def get_next(self):
        if self.i == len(self.lines):
            return None
        self.i += 1
        return {self.input_name: self.lines[self.i - 1 : self.i]}


def test_an_onnxruntime_calibration_data_reader_gives_the_bytes_of_the_npz(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(OcrLines, CalibrationDataReader):
        pass

    model, calib = MODELS / "ppocr_rec_v4.onnx", DATA / "ocr_lines_calib.npz"
    name = onnx.load(model, load_external_data=False).graph.input[0].name
    options = ["--mode", "static", "--target-sqnr", "0", "--no-latency-check"]
    cli_ok("quantize", model, "-o", tmp_path / "cli.onnx", "--calib", calib, *options)
    prunq.quantize(model, tmp_path / "py.onnx", data=Reader(calib, name), mode="static", target_sqnr=0,
                   latency_check=False, quiet=True)
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()


def test_a_modelproto_in_gives_a_modelproto_out_and_nothing_written(tmp_path):
    original = onnx.load(MODELS / "minilm_l6.onnx")
    before = set(os.listdir(tmp_path))
    result = prunq.quantize(original, mode="weights", latency_check=False, quiet=True)
    quantized = result.model
    assert isinstance(quantized, onnx.ModelProto) and result.output is None
    assert len(result.model_bytes) < 0.3 * original.ByteSize()
    assert any(t.data_type == onnx.TensorProto.INT8 for t in quantized.graph.initializer)
    assert set(os.listdir(tmp_path)) == before
    compared = prunq.compare(original, quantized, DATA / "sentences_test.npz", progress=False)
    assert compared.report["outputs"][0]["cosine_mean"] > 0.99, compared.report["outputs"][0]


def test_defaults_are_the_librarys():
    d = prunq.defaults("quantize")
    assert d["mode"] == "weights" and d["bits"] == 8 and d["fallback-int8"] is True
    assert d["smooth"] == "auto"  # static's SmoothQuant, `off` to turn it off
    assert prunq.defaults("prune")["structured"] is False
    assert "Defaults (None): mode='weights', bits=8" in prunq.quantize.__doc__


def test_progress_shows_as_tqdm_bars_when_tqdm_is_installed(tmp_path, monkeypatch, capsys):
    """With tqdm importable, each stage is a tqdm bar (what notebooks show) and the lines said are
    printed on stdout; tqdm is stood in for by a recorder, so the test needs no tqdm install."""
    import types

    bars = []

    class Bar:
        def __init__(self, total=None, desc=None, leave=True):
            self.desc, self.total, self.done, self.closed = desc, total, 0, False
            bars.append(self)

        def update(self, n):
            self.done += n

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=Bar))
    # digits_mlp: static on no other model here (a process measures each calibration once).
    prunq.quantize(MODELS / "digits_mlp.onnx", tmp_path / "o.onnx", mode="static", data=DATA / "digits_calib.npz",
                   latency_check=False)
    calibrate = [b for b in bars if b.desc == "calibrate"]
    assert calibrate and calibrate[0].done == calibrate[0].total > 0, [(b.desc, b.done, b.total) for b in bars]
    assert all(b.closed for b in bars)
    assert "tensors quantized" in capsys.readouterr().out


def test_a_missing_file_is_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        prunq.quantize(missing, tmp_path / "out.onnx")


def test_a_truncated_model_is_a_model_error_naming_the_file(tmp_path):
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes((MODELS / "digits_cnn.onnx").read_bytes()[:5000])
    with pytest.raises(prunq.ModelError, match="cut.onnx"):
        prunq.quantize(truncated, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_data_with_a_wrong_input_name_is_a_data_error_naming_it(tmp_path):
    images = np.load(DATA / "digits_calib.npz")
    first = [k for k in images.files if k not in ("label", "labels", "y")][0]
    with pytest.raises(prunq.DataError, match="no array for model input 'input'.*not_an_input"):
        prunq.quantize(MODELS / "digits_cnn.onnx", tmp_path / "out.onnx", mode="static",
                       data={"not_an_input": images[first]}, latency_check=False, quiet=True)
    assert not (tmp_path / "out.onnx").exists()


def test_a_reader_returning_the_wrong_dtype_is_a_data_error_naming_the_input(tmp_path):
    images = np.load(DATA / "digits_calib.npz")
    name = onnx.load(MODELS / "digits_cnn.onnx").graph.input[0].name
    first = [k for k in images.files if k not in ("label", "labels", "y")][0]

    class Strings:
        def __init__(self):
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return {name: images[first][:4].astype(np.int64)}

    with pytest.raises(prunq.DataError, match=name):
        prunq.quantize(MODELS / "digits_cnn.onnx", tmp_path / "out.onnx", mode="static", data=Strings(),
                       latency_check=False, quiet=True)


def test_bad_options_are_usage_errors_naming_the_option(tmp_path):
    with pytest.raises(prunq.UsageError, match="bits 3"):
        prunq.quantize(MODELS / "digits_mlp.onnx", tmp_path / "o.onnx", bits=3)
    with pytest.raises(prunq.UsageError, match="weight_type"):
        prunq.quantize(MODELS / "digits_mlp.onnx", tmp_path / "o.onnx", weight_type="int3")
    assert issubclass(prunq.UsageError, prunq.PrunqError) and issubclass(prunq.DataError, prunq.PrunqError)


def test_a_stop_asked_while_running_writes_nothing(tmp_path):
    """What Ctrl-C does in Python: the progress callback raises KeyboardInterrupt, the job stops
    before writing, and the exception reaches the caller."""

    def interrupt(event, text, n):
        if event == "start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prunq.quantize(MODELS / "digits_cnn.onnx", tmp_path / "out.onnx", mode="static",
                       data=DATA / "digits_calib.npz", latency_check=False, progress=interrupt)
    assert os.listdir(tmp_path) == []


def test_ctrl_c_stops_a_running_job_and_writes_nothing(tmp_path):
    """A real SIGINT while ppocr_rec_v4 calibrates (tens of seconds): Python's KeyboardInterrupt
    within seconds, the process alive to handle it, no output file."""
    out = tmp_path / "out.onnx"
    script = (
        "import signal, sys, prunq\n"
        # A shell that starts a command in the background (`.ci/run &`) hands its children SIGINT
        # ignored, and Python then installs no handler: the user's interpreter has one.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "print('ready', flush=True)\n"
        "try:\n"
        f"    prunq.quantize({str(MODELS / 'ppocr_rec_v4.onnx')!r}, {str(out)!r}, mode='static',\n"
        f"                   data={str(DATA / 'ocr_lines_calib.npz')!r}, quiet=True, progress=False)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True); sys.exit(3)\n"
        "print('finished')\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(3)  # inside the calibration (the whole run takes over 40 s)
    p.send_signal(signal.SIGINT)
    started = time.monotonic()
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 3 and "interrupted" in stdout, (p.returncode, stdout, stderr)
    assert time.monotonic() - started < 30, "the stop took too long"
    assert not out.exists() and os.listdir(tmp_path) == []


def test_optimize_saves_a_recipe_that_apply_replays_to_the_same_bytes(tmp_path):
    model, calib, val = MODELS / "digits_mlp.onnx", DATA / "digits_calib.npz", DATA / "digits_test.npz"
    best = prunq.optimize(model, tmp_path / "best.onnx", data=calib, val=dict(np.load(val)), max_drop=1,
                          time_budget=20, save_recipe=tmp_path / "best.toml", quiet=True, progress=False)
    assert best.report["search"]["candidates"], best.report
    assert (tmp_path / "best.toml").read_text().startswith("# prunq recipe")
    prunq.apply(tmp_path / "best.toml", model, tmp_path / "again.onnx", data=calib, latency_check=False, quiet=True)
    assert (tmp_path / "again.onnx").read_bytes() == (tmp_path / "best.onnx").read_bytes()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


def test_a_process_that_imported_onnxruntime_first_keeps_working(tmp_path):
    """prunq loads the interpreter's own ONNX Runtime library: a session made before prunq runs
    still runs after it, with the same outputs."""
    code = f"""
import numpy as np, onnxruntime as ort
model, data = {str(MODELS / 'digits_mlp.onnx')!r}, {str(DATA / 'digits_test.npz')!r}
x = np.load(data)['input'][:8]
session = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
before = session.run(None, {{session.get_inputs()[0].name: x}})[0]
import prunq
assert prunq.set_runtime('ort').startswith('onnxruntime '), 'prunq did not use onnxruntime'
prunq.quantize(model, {str(tmp_path / 'q.onnx')!r}, mode='dynamic', quiet=True)
after = session.run(None, {{session.get_inputs()[0].name: x}})[0]
assert np.array_equal(before, after)
print('ok', ort.__version__)
"""
    r = run_python(code)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr


def test_auto_falls_back_to_tract_with_a_warning_when_onnx_runtime_does_not_load(tmp_path):
    code = f"""
import warnings, prunq
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter('always')
    used = prunq.set_runtime('auto')
print(used)
print([str(w.message) for w in said])
r = prunq.quantize({str(MODELS / 'digits_mlp.onnx')!r}, {str(tmp_path / 'q.onnx')!r}, quiet=True,
                   val={str(DATA / 'digits_test.npz')!r})
print(r.report['runtime']['backend'])
try:
    prunq.set_runtime('ort')
except prunq.RuntimeFailure as e:
    print('RuntimeFailure', e)
"""
    r = run_python(code, ORT_DYLIB_PATH=str(tmp_path / "no_such_library.so"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "tract" and "ONNX Runtime did not load" in lines[1] and "no_such_library" in lines[1], lines
    assert lines[2] == "tract", lines
    assert lines[3].startswith("RuntimeFailure") and "no_such_library" in lines[3], "asked for by name, it is an error"


def test_text_data_through_a_tokenizer_as_the_cli_takes_it():
    prunq.set_data_options(tokenizer=MODELS / "minilm_l6.tokenizer.json", max_len=32)
    try:
        r = prunq.compare(MODELS / "minilm_l6.onnx", MODELS / "minilm_l6.onnx", DATA / "sentences.txt", progress=False)
    finally:
        prunq.set_data_options()
    assert r.report["samples"] == 512 and r.report["outputs"][0]["cosine_mean"] == 1.0, r.report


def test_a_stop_during_optimize_starts_no_new_candidate_and_writes_nothing(tmp_path):
    tried = []

    def stop_after_the_first(event, text, n):
        if event == "say" and text.startswith("trying "):
            tried.append(text)
            if len(tried) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prunq.optimize(MODELS / "digits_mlp.onnx", tmp_path / "best.onnx", data=DATA / "digits_calib.npz",
                       val=DATA / "digits_test.npz", progress=stop_after_the_first)
    assert len(tried) == 2 and os.listdir(tmp_path) == []


def test_evaluate_and_bench(tmp_path):
    accuracy = prunq.evaluate(MODELS / "digits_mlp.onnx", DATA / "digits_test.npz", progress=False)
    assert accuracy.report["accuracy"] > 0.9, accuracy.report
    timed = prunq.bench([MODELS / "digits_mlp.onnx"], DATA / "digits_test.npz", runtime="tract", runs=3, warmup=1,
                        progress=False)
    assert timed.report[0]["models"], timed.report


def test_the_command_runs_from_the_wheel():
    assert cli_ok("--version").startswith("prunq ")
    r = subprocess.run(["prunq", "--version"], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert r.returncode == 0 and r.stdout.startswith("prunq "), r.stderr
    assert cli("quantize").returncode == 2, "a usage error is status 2"


def test_quantize_writes_litert_checked_and_timed_there(tmp_path):
    # A .tflite output: converted, run in LiteRT (this interpreter's ai_edge_litert) beside the
    # original, written as LiteRT, and timed in LiteRT against the input converted as it is.
    out = tmp_path / "cnn.int8.tflite"
    result = prunq.quantize(MODELS / "digits_cnn.onnx", out, mode="static", data=DATA / "digits_calib.npz",
                            val=DATA / "digits_test.npz", quiet=True)
    assert out.read_bytes()[4:8] == b"TFL3"
    assert result.latency["runtime"]["backend"] == "litert"
    # Speed floors live in bench/ (CI machines vary); here the timing must have run, both models.
    assert result.latency["runs"] > 0 and result.latency["input_ms"] > 0 and result.latency["output_ms"] > 0
    assert result.comparison["outputs"][0]["top1_agreement"] > 0.99


def test_convert_to_litert_and_run_it_there(tmp_path):
    # prunq.convert is `prunq convert`: checked in LiteRT before anything is written; without an
    # output the .tflite's bytes come back. compare/evaluate/bench take a .tflite, and
    # runtime="litert" runs an ONNX model there (converted first).
    result = prunq.convert(MODELS / "digits_cnn.onnx", val=DATA / "digits_test.npz", quiet=True)
    tflite = result.model_bytes
    assert tflite[4:8] == b"TFL3" and result.model is None
    assert result.output_check["outputs"][0]["top1_agreement"] == 1.0
    out = tmp_path / "cnn.tflite"
    prunq.convert(MODELS / "digits_cnn.onnx", out, val=DATA / "digits_test.npz", quiet=True)
    assert out.read_bytes() == tflite, "same input and options, same bytes"
    compared = prunq.compare(MODELS / "digits_cnn.onnx", tflite, DATA / "digits_test.npz", progress=False)
    assert compared.candidate_runtime["backend"] == "litert"
    assert compared.outputs[0]["top1_agreement"] == 1.0
    evaluated = prunq.evaluate(MODELS / "digits_cnn.onnx", DATA / "digits_test.npz", runtime="litert", progress=False)
    assert evaluated.runtime["backend"] == "litert" and abs(evaluated.accuracy - 0.998) < 1e-9
    timed = prunq.bench([MODELS / "digits_cnn.onnx", out], DATA / "digits_test.npz", runtime="litert", runs=3,
                        warmup=1, progress=False)
    assert timed.report[0]["runtime"]["backend"] == "litert"
    with pytest.raises(prunq.UsageError, match="input x has a dynamic size"):
        prunq.convert(MODELS / "ppocr_rec_v4.onnx", tmp_path / "rec.tflite", quiet=True)
    assert not (tmp_path / "rec.tflite").exists()


def rate_gated(path: Path) -> dict:
    """A Silero-style model: every weight inside the If branch its int64 `sr` chooses. Returns
    data for it (16 rows at sr = 16000)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def branch(name: str, hidden: int) -> onnx.GraphProto:
        weights = [numpy_helper.from_array((rng.standard_normal(s) / 8).astype(np.float32), f"{name}.w{i}")
                   for i, s in enumerate([(32, hidden), (hidden, 4)])]
        nodes = [helper.make_node("MatMul", ["x", f"{name}.w0"], [f"{name}.h"]),
                 helper.make_node("Relu", [f"{name}.h"], [f"{name}.r"]),
                 helper.make_node("MatMul", [f"{name}.r", f"{name}.w1"], [f"{name}.y"])]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}.y", TensorProto.FLOAT, ["N", 4])],
                                 weights)

    graph = helper.make_graph(
        [helper.make_node("Equal", ["sr", "rate"], ["is_16k"]),
         helper.make_node("If", ["is_16k"], ["y"], then_branch=branch("at_16k", 64), else_branch=branch("at_8k", 32))],
        "gated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(16000, dtype=np.int64), "rate")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return {"x": rng.standard_normal((16, 32)).astype(np.float32), "sr": np.array(16000, dtype=np.int64)}


def test_fix_inputs_specialises_a_rate_gated_model_as_the_cli_does(tmp_path):
    # fix_inputs is --fix-input: the If the rate decides becomes its branch, static quantization
    # then runs on the plain graph, and the bytes are the CLI's.
    model = tmp_path / "gated.onnx"
    data = rate_gated(model)
    np.savez(tmp_path / "calib.npz", **data)
    cli_ok("quantize", model, "-o", tmp_path / "cli.onnx", "--mode", "static", "--calib", tmp_path / "calib.npz",
           "--fix-input", "sr=16000", "--no-latency-check")
    said = []
    prunq.quantize(model, tmp_path / "py.onnx", data=data, mode="static", fix_inputs={"sr": 16000},
                   latency_check=False, progress=lambda event, text, n: said.append(text))
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    assert any(text.startswith("specialised: sr = 16000") for text in said), said
    written = onnx.load(tmp_path / "py.onnx")
    assert [i.name for i in written.graph.input] == ["x"]
    assert all(n.op_type != "If" for n in written.graph.node)
    with pytest.raises(prunq.UsageError, match="no input 'rate'"):
        prunq.quantize(model, tmp_path / "bad.onnx", data=data, mode="static", fix_inputs={"rate": 1}, quiet=True)
    assert not (tmp_path / "bad.onnx").exists()
