"""The CPU class every benchmark names beside its figures (the machines vary between sessions)."""


def cpu_class():
    """e.g. "Intel(R) Xeon(R) Processor, AVX-512 VNNI + AMX-INT8" or "…, AVX2, no VNNI"."""
    info = open("/proc/cpuinfo").read()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "x86_64")
    if "avx512_vnni" not in info:
        return f"{model}, AVX2, no VNNI"
    return f"{model}, AVX-512 VNNI" + (" + AMX-INT8" if "amx_int8" in info else "")
