"""A streaming resampler: julius's exact result over a signal given block by block, used on the
way in (the input's rate to the model's) and on the way out (the model's rate to the stems')."""

from __future__ import annotations


class Resampler:
    """julius.resample_frac(x, old_sr, new_sr) over a signal given in consecutive blocks: the same
    kernels, replicate padding at both ends and output length; each output sample depends on the
    input within the kernel's reach only, so the result is the whole-signal one."""

    def __init__(self, old_sr: int, new_sr: int):
        import julius

        self.identity = old_sr == new_sr
        self.inputs = 0
        self.outputs = 0
        self.buffer = None  # the padded input from the next output block on
        if not self.identity:
            resample = julius.ResampleFrac(old_sr, new_sr)
            self.old, self.new, self.width = resample.old_sr, resample.new_sr, resample._width
            self.kernel = resample.kernel

    def _run(self):
        import torch
        import torch.nn.functional as F

        size = self.kernel.shape[-1]
        length = self.buffer.shape[-1]
        blocks = (length - size) // self.old + 1 if length >= size else 0
        if blocks <= 0:
            return self.buffer[..., :0]
        used = self.buffer[..., : (blocks - 1) * self.old + size]
        shape = used.shape[:-1]
        ys = F.conv1d(used.reshape(-1, 1, used.shape[-1]), self.kernel.to(used), stride=self.old)
        self.buffer = self.buffer[..., blocks * self.old :]
        return torch.reshape(ys.transpose(1, 2), (*shape, blocks * self.new))

    def feed(self, x):
        import torch

        self.inputs += x.shape[-1]
        if self.identity or x.shape[-1] == 0:
            self.outputs += x.shape[-1] if self.identity else 0
            return x if self.identity else x[..., :0]
        if self.buffer is None:  # replicate padding on the left, as julius does
            self.buffer = torch.cat([x[..., :1].expand(*x.shape[:-1], self.width), x], dim=-1)
        else:
            self.buffer = torch.cat([self.buffer, x], dim=-1)
        y = self._run()
        self.outputs += y.shape[-1]
        return y

    def finish(self):
        import torch

        if self.identity or self.buffer is None:
            return None
        self.buffer = torch.cat(
            [self.buffer, self.buffer[..., -1:].expand(*self.buffer.shape[:-1], self.width + self.old)], dim=-1
        )
        # julius computes the length in float32: floor(float32(new * length / old)).
        total = int(torch.floor(torch.as_tensor(self.new * self.inputs / self.old)))
        y = self._run()[..., : max(0, total - self.outputs)]
        self.outputs += y.shape[-1]
        return y
