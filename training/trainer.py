"""`SalovaTrainer`: TRL's `SFTTrainer` with SALOVA's loss `L_ar + w · L_sim` really in the optimised loss.

TRL 1.16 patches the model with a fused LM head and its `compute_loss` calls `model(..., fused_lm_head=True)`,
which runs the backbone and the LM head only: the router loss computed in SALOVA's `forward` never reaches the
optimiser that way. This trainer's `compute_loss` runs SALOVA's own forward instead, asking for logits only at the
positions that predict a response token (`logits_to_keep`), so the full `(B, L, V)` logits are never built.

Normalisation follows the Trainer's: the LM loss is a token sum over `num_items_in_batch` (all ranks and
accumulation steps), multiplied by the number of processes when tokens are averaged across devices; `L_sim` is a
per-micro-batch mean, so it is divided by the accumulation steps whenever the Trainer leaves that to the loss.
"""

import torch
import torch.nn.functional as F
from trl import SFTTrainer


class SalovaTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        labels = inputs.pop("labels")
        next_token_labels = labels[:, 1:]
        positions = (next_token_labels != -100).any(dim=0).nonzero().squeeze(1)
        outputs = model(**inputs, logits_to_keep=positions, use_cache=False)
        targets = next_token_labels[:, positions]
        token_losses = F.cross_entropy(
            outputs.logits.float().flatten(0, 1), targets.flatten().to(outputs.logits.device), reduction="sum"
        )
        num_tokens = (targets != -100).sum() if num_items_in_batch is None else num_items_in_batch
        lm_loss = token_losses / torch.as_tensor(num_tokens, device=token_losses.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            lm_loss = lm_loss * self.accelerator.num_processes
        loss = lm_loss
        if outputs.similarity_loss is not None:
            weight = self.model.config.similarity_loss_weight
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + weight * outputs.similarity_loss.to(loss.device) / steps
            self._metrics[mode]["similarity_loss"].append(outputs.similarity_loss.detach().item())
        self._metrics[mode]["lm_loss"].append((token_losses / (targets != -100).sum().clamp(min=1)).detach().item())
        inputs["labels"] = labels
        return (loss, outputs) if return_outputs else loss
