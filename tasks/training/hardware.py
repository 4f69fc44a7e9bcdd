"""Where the training loop runs: the device, the precision and the number of processes, decided
once from `train:` and what this machine has. `choose` is the decision (pure, tested); `detect`
asks torch what is here; `check_hardware` is both, raising a clear error before anything trains."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.config import TrainSettings
from tasks.errors import UserError


class HardwareError(ValueError, UserError):
    """The settings ask for hardware this machine does not have; the message says what to change."""


@dataclass(frozen=True)
class Machine:
    cuda_devices: int            # torch.cuda.device_count()
    cuda_bf16: bool              # the first CUDA device supports bf16
    # A bf16-autocast step's speed over fp32's on this CPU (cpu_precision.py); None: not measured
    # (a GPU run, or a precision set explicitly).
    cpu_bf16_speedup: float | None = None


@dataclass(frozen=True)
class Hardware:
    device: str                  # cpu | cuda
    precision: str               # no | bf16 | fp16 (accelerate's names; no = fp32)
    processes: int
    reason: str                  # why, in a sentence for the log

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"


def choose(train: TrainSettings, machine: Machine) -> Hardware:
    """The device, precision and process count a run uses (train.device / mixed_precision: auto
    resolved against `machine`)."""
    if train.device == "cuda" and machine.cuda_devices == 0:
        raise HardwareError("train.device: cuda, but torch finds no CUDA device on this machine "
                            "(torch.cuda.is_available() is False); set train.device: auto or cpu")
    device = "cuda" if train.device == "cuda" or (train.device == "auto" and machine.cuda_devices) else "cpu"
    if device == "cuda" and train.processes > machine.cuda_devices:
        raise HardwareError(f"train.processes: {train.processes} processes, one per GPU, but this machine has "
                            f"{machine.cuda_devices} CUDA device(s); lower train.processes")
    if device == "cpu" and train.mixed_precision == "fp16":
        raise HardwareError("train.mixed_precision: fp16 needs a GPU and this run is on the CPU; "
                            "use bf16 or no (or a machine with CUDA)")
    precision, why = train.mixed_precision, "as set in train.mixed_precision"
    if precision == "auto" and device == "cuda":
        precision = "bf16" if machine.cuda_bf16 else "fp16"
        why = "auto on a GPU: " + ("bf16 (supported)" if machine.cuda_bf16 else "fp16 (no bf16 on this GPU)")
    elif precision == "auto":
        precision, why = cpu_auto_precision(train.cpu_bf16_min_speedup, machine.cpu_bf16_speedup)
    processes = train.processes
    return Hardware(device, precision, processes,
                    f"{device} x {processes} process(es), precision {precision} ({why}); effective batch "
                    f"{train.batch_size} x {train.grad_accum_steps} accumulation x {processes} = "
                    f"{train.effective_batch}")


def cpu_auto_precision(min_speedup: float, speedup: float | None) -> tuple[str, str]:
    """auto on a CPU: bf16 only where a bf16 step measured at least `min_speedup` times fp32's on
    this machine (0: never). A change of precision can move results, so the bar is a setting."""
    measured = f"a bf16 step measured {speedup:.2f}x fp32's here" if speedup is not None else "not measured"
    if min_speedup and speedup is not None and speedup >= min_speedup:
        return "bf16", f"auto on a CPU: bf16 ({measured}, at least train.cpu_bf16_min_speedup {min_speedup:g})"
    bar = (f"below train.cpu_bf16_min_speedup {min_speedup:g}" if min_speedup
           else "train.cpu_bf16_min_speedup is 0; set train.mixed_precision: bf16 to use it")
    return "no", f"auto on a CPU: fp32 ({measured}; {bar})"


def evaluation_precision(hardware: Hardware) -> str:
    """The precision of passes that only measure a model (the validation loss behind
    val_perplexity, the forgetting probe's features; tasks/models/precision.py, autocast_in): a CPU
    run's training precision, where every model is on the CPU and its checks ran in it; fp32 on a
    GPU run, whose prompted models and the probe's base stay on the CPU, where fp16 is refused
    and bf16 was never measured."""
    return hardware.precision if hardware.cpu else "no"


def generation_precision(setting: str, hardware: Hardware) -> tuple[str, str]:
    """generation.precision resolved (fp32 | bf16) and why: auto generates in bf16 where the run
    trains in bf16 (the CPU's start-up measurement, or a GPU with bf16), else in fp32."""
    if setting != "auto":
        return setting, "as set in generation.precision"
    trains = "fp32" if hardware.precision == "no" else hardware.precision
    return ("bf16" if trains == "bf16" else "fp32"), f"auto: the run trains in {trains}"


def detect(train: TrainSettings | None = None) -> Machine:
    """What torch finds here; on a CPU-only machine whose run leaves the precision to auto, also
    how much faster bf16 is (measured once per machine and cached: about 1 s)."""
    from tasks.training.cpu_precision import cpu_precision, torch_version

    count, bf16 = (0, False) if torch_version().endswith("+cpu") else _cuda()
    speedup = None
    if train is not None and train.mixed_precision == "auto" and train.device != "cuda" and not count:
        speedup = cpu_precision().bf16_speedup
    return Machine(count, bf16, speedup)


def _cuda() -> tuple[int, bool]:
    """CUDA devices and whether the first supports bf16. Not asked of a CPU-only build of torch
    (`+cpu`, as `make setup` installs), which has none: the flow's process then never imports
    torch (1 s)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return count, bool(count) and torch.cuda.is_bf16_supported()


def check_hardware(train: TrainSettings) -> Hardware:
    return choose(train, detect(train))


def threads_per_process(train: TrainSettings, hardware: Hardware) -> int:
    """torch threads for each process: on a CPU the processes share train.threads (2 cores here)."""
    return max(1, train.threads // hardware.processes) if hardware.cpu else train.threads


def is_main_process(hardware: Hardware) -> bool:
    """True in a single-process run, and in the main process of several (`accelerate launch`)."""
    if hardware.processes == 1:
        return True
    from accelerate import PartialState

    return PartialState(cpu=hardware.cpu).is_main_process
