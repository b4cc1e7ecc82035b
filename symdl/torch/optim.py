"""Optimizers built on symdl's in-place update kernels.

``Adam`` and ``RMSprop`` take ``torch.optim.Adam``'s and ``torch.optim.RMSprop``'s
constructor arguments and keep the same state under the same names, so a
``state_dict()`` of one loads into the other. Each step is one call of the generated
kernel (``adam_step``, ``rmsprop_step``) per parameter, on the tensors' memory.
``optimizer_class(kernel)`` turns any in-place update kernel (one of your formula
file's, e.g. AdamW) into such an optimizer class, and ``optimizers(module)`` does so
for every in-place update kernel of a generated module.

Parameters must be float32 or float64 CPU tensors with dense gradients: the update
is in place, so float16/bfloat16 parameters (which the kernels would compute in a
float32 copy) are refused rather than silently copied every step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch.autograd.graph import increment_version
from torch.optim.optimizer import _get_scalar_dtype

from symdl.kernels import adam_step, rmsprop_step

_NATIVE = (torch.float32, torch.float64)


def _as_float(value: object) -> object:
    """A hyperparameter as the kernel takes it (torch allows 0-d tensors for lr)."""
    return float(value) if isinstance(value, torch.Tensor) else value


class KernelOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose step is an in-place update kernel of symdl.

    Subclasses set ``kernel``, ``states`` (kernel argument -> state key), ``step_arg``
    (the kernel's step-number argument, or None) and ``hyperparameters(group)`` (the
    kernel's scalar arguments from a parameter group).
    """

    kernel: Callable
    states: dict[str, str] = {}
    step_arg: str | None = None

    def hyperparameters(self, group: dict) -> dict:
        raise NotImplementedError

    def needs_state(self, arg: str, group: dict) -> bool:
        """Whether the state for a kernel argument is kept (torch keeps no momentum
        buffer without momentum)."""
        return True

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter with a gradient.

        Returns:
            The closure's loss, if a closure was given, else None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        name = type(self).__name__
        for group in self.param_groups:
            hyper = self.hyperparameters(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError(f"{name}: sparse gradients are not supported")
                if p.device.type != "cpu":
                    raise ValueError(f"{name}: a parameter is on {p.device}; symdl's kernels "
                                     "run on the CPU only (no GPU backend yet)")
                if p.dtype not in _NATIVE:
                    raise TypeError(f"{name}: parameters must be float32 or float64 (the "
                                    f"update is in place), got {p.dtype}")
                self._update(p, group, hyper)
        return loss

    def _update(self, p: torch.Tensor, group: dict, hyper: dict) -> None:
        state = self.state[p]
        if not state:
            if self.step_arg is not None:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
            for arg, key in self.states.items():
                if self.needs_state(arg, group):
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        arrays = {}
        for arg, key in self.states.items():
            if key not in state:  # (a buffer the kernel leaves untouched: never paged in)
                state_buffer = self._scratch.setdefault(p, torch.empty_like(p))
                arrays[arg] = state_buffer.numpy()
            else:
                arrays[arg] = state[key].numpy()
        scalars = dict(hyper)
        if self.step_arg is not None:
            state["step"] += 1
            scalars[self.step_arg] = int(state["step"].item())
        self.kernel(p.detach().numpy(), p.grad.detach().numpy(), **arrays, **scalars)
        _written(p, [state[key] for key in self.states.values() if key in state])

    @property
    def _scratch(self) -> dict:
        """Buffers for kernel arguments that torch keeps no state for."""
        return self.__dict__.setdefault("_symdl_scratch", {})


def _written(p: torch.Tensor, states: list[torch.Tensor]) -> None:
    """Tell autograd the kernel wrote these tensors (through NumPy, which it cannot
    see): a backward through a graph that saved the old parameter then fails, as it
    does after torch's own in-place update, instead of using the new values."""
    increment_version([p, *states])


def _refuse(name: str, **options: object) -> None:
    """Options of torch's optimizer that the kernel does not compute."""
    for option, (value, supported) in options.items():
        if value != supported:
            raise ValueError(f"{name}: {option}={value!r} is not supported (the generated "
                             f"kernel computes {option}={supported!r}); write the variant as "
                             "an update formula and use symdl.torch.optim.optimizer_class")


class Adam(KernelOptimizer):
    """``torch.optim.Adam`` computed by the generated ``adam_step`` kernel.

    Takes torch's arguments; weight_decay, amsgrad, maximize, capturable,
    differentiable, fused and decoupled_weight_decay must keep their defaults.
    """

    kernel = staticmethod(adam_step)
    states = {"m": "exp_avg", "v": "exp_avg_sq"}
    step_arg = "t"

    def __init__(self, params: Iterable, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        _refuse("Adam", weight_decay=(weight_decay, 0), amsgrad=(amsgrad, False),
                maximize=(maximize, False), capturable=(capturable, False),
                differentiable=(differentiable, False), fused=(bool(fused), False),
                decoupled_weight_decay=(decoupled_weight_decay, False))
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise TypeError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def hyperparameters(self, group: dict) -> dict:
        beta1, beta2 = group["betas"]
        return dict(lr=_as_float(group["lr"]), beta1=_as_float(beta1),
                    beta2=_as_float(beta2), eps=group["eps"])


class RMSprop(KernelOptimizer):
    """``torch.optim.RMSprop`` computed by the generated ``rmsprop_step`` kernel.

    Takes torch's arguments; weight_decay, centered, capturable, maximize and
    differentiable must keep their defaults. As in torch, no momentum buffer is kept
    without momentum.
    """

    kernel = staticmethod(rmsprop_step)
    states = {"square_avg": "square_avg", "momentum_buf": "momentum_buffer"}
    step_arg = None

    def __init__(self, params: Iterable, lr: float | torch.Tensor = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        _refuse("RMSprop", weight_decay=(weight_decay, 0), centered=(centered, False),
                capturable=(capturable, False), maximize=(maximize, False),
                differentiable=(differentiable, False))
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def needs_state(self, arg: str, group: dict) -> bool:
        return arg != "momentum_buf" or group["momentum"] > 0

    def _update(self, p: torch.Tensor, group: dict, hyper: dict) -> None:
        super()._update(p, group, hyper)
        # torch counts steps in RMSprop's state too (its update does not use them).
        state = self.state[p]
        state["step"] = state.get("step", torch.tensor(0.0, dtype=_get_scalar_dtype())) + 1

    def hyperparameters(self, group: dict) -> dict:
        return dict(lr=_as_float(group["lr"]), alpha=group["alpha"], eps=group["eps"],
                    momentum=group["momentum"])


def optimizer_class(kernel: Callable, *, param: str | None = None, grad: str = "grad",
                    step: str | None = "t", name: str | None = None) -> type[KernelOptimizer]:
    """An optimizer class from an in-place update kernel, e.g. a formula file's AdamW.

    The kernel's arguments are read from its signature: ``param`` (default: the first)
    is the parameter, ``grad`` the gradient, ``step`` the 1-based step number (if the
    kernel has that argument), the other arguments without a default are state
    arrays (kept under their own names, zeros at the first step), and the arguments
    with a default are the hyperparameters: the class takes them as keyword arguments
    with those defaults, per parameter group as in torch.

    Returns:
        A ``torch.optim.Optimizer`` subclass: ``cls(params, **hyperparameters)``.
    """
    arguments = list(inspect.signature(kernel).parameters.values())
    names = [a.name for a in arguments]
    param = param or names[0]
    for role, value in (("param", param), ("grad", grad)):
        if value not in names:
            raise ValueError(f"optimizer_class(): argument '{role}' names {value!r}, which "
                             f"is not an argument of {kernel.__name__}{tuple(names)}")
    if step not in names:
        step = None
    required = [a.name for a in arguments if a.default is inspect.Parameter.empty]
    state_args = [n for n in required if n not in (param, grad, step)]
    hyper = {a.name: a.default for a in arguments if a.default is not inspect.Parameter.empty}

    def __init__(self, params: Iterable, **hyperparameters: object) -> None:
        unknown = sorted(set(hyperparameters) - set(hyper))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown argument {unknown[0]!r}; "
                            f"the hyperparameters are {sorted(hyper)}")
        KernelOptimizer.__init__(self, params, {**hyper, **hyperparameters})

    def hyperparameters(self, group: dict) -> dict:
        return {k: _as_float(group[k]) for k in hyper}

    def _update(self, p: torch.Tensor, group: dict, scalars: dict) -> None:
        # The kernel's own argument names (the parameter's first, positionally).
        state = self.state[p]
        if not state:
            if step is not None:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
            for arg in state_args:
                state[arg] = torch.zeros_like(p, memory_format=torch.preserve_format)
        arrays = {arg: state[arg].numpy() for arg in state_args}
        scalars = dict(scalars)
        if step is not None:
            state["step"] += 1
            scalars[step] = int(state["step"].item())
        kernel(**{param: p.detach().numpy(), grad: p.grad.detach().numpy()}, **arrays,
               **scalars)
        _written(p, [state[arg] for arg in state_args])

    cls_name = name or "".join(w.title() for w in kernel.__name__.removesuffix("_step")
                               .split("_"))
    return type(cls_name, (KernelOptimizer,), {
        "__init__": __init__, "hyperparameters": hyperparameters, "_update": _update,
        "kernel": staticmethod(kernel), "states": {a: a for a in state_args},
        "step_arg": step, "__doc__": f"Optimizer computed by the kernel {kernel.__name__}."})


def optimizers(module: object) -> dict[str, type[KernelOptimizer]]:
    """An optimizer class for every in-place update kernel of a generated module: the
    kernels with a ``grad`` argument and no ``out=`` (an update writes its inputs).

    Returns:
        Class name (``adamw_step`` -> ``Adamw``) -> class, as ``optimizer_class`` makes.
    """
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    classes = {}
    for name in names:
        kernel = getattr(module, name)
        params = inspect.signature(kernel).parameters if callable(kernel) else {}
        if "grad" in params and "out" not in params:
            cls = optimizer_class(kernel)
            classes[cls.__name__] = cls
    return classes
