"""`SalovaTrainer`: TRL's `SFTTrainer` with SALOVA's loss `L_ar + w · L_sim` really in the optimised loss.

TRL 1.16 patches the model with a fused LM head and its `compute_loss` calls `model(..., fused_lm_head=True)`,
which runs the backbone and the LM head only: the router loss computed in SALOVA's `forward` never reaches the
optimiser that way. This trainer's `compute_loss` runs SALOVA's own forward instead, asking for logits only at the
positions that predict a response token (`logits_to_keep`), so the full `(B, L, V)` logits are never built.

Normalisation follows the Trainer's: the LM loss is a token sum over `num_items_in_batch` (all ranks and
accumulation steps), multiplied by the number of processes when tokens are averaged across devices; `L_sim` is a
per-micro-batch mean, so it is divided by the accumulation steps whenever the Trainer leaves that to the loss.
"""

import shutil
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from salova.modeling.losses import similarity_loss
from salova.training.collator import COUNT_KEYS
from salova.training.recipe import TOWER_MODULES, parameter_groups
from trl import SFTTrainer

ROUTER_TARGET_KEYS = (
    "query_labels",
    "query_label_mask",
    "extra_query_input_ids",
    "extra_query_attention_mask",
    "extra_query_rows",
    "extra_query_labels",
    "extra_query_segment_mask",
)


class SalovaTrainer(SFTTrainer):
    """`tower_learning_rate`: the rate of parameters under `tower_modules` (None: the args' `learning_rate`)."""

    def __init__(self, *args, tower_learning_rate: float | None = None, tower_modules=TOWER_MODULES, **kwargs):
        self.tower_learning_rate = tower_learning_rate
        self.tower_modules = list(tower_modules)
        self.data_counts = Counter()
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """AdamW (or the args' optimizer) over the tower and non-tower groups. DeepSpeed uses it too, as long as its
        config has no `optimizer` block."""
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = parameter_groups(
                model,
                self.args.learning_rate,
                self.tower_learning_rate,
                self.tower_modules,
                self.args.weight_decay,
                set(self.get_decay_parameter_names(model)),
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Periodic pushes upload `output_dir` after copying only weights and config into it; the remote code the
        config's `auto_map` points to must be there too, or the pushed repository does not load."""
        if self.is_world_process_zero():
            stage_remote_code(checkpoint_folder, self.args.output_dir)
        super()._push_from_checkpoint(checkpoint_folder)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        labels = inputs.pop("labels")
        for key in COUNT_KEYS:
            count = inputs.pop(key, None)
            if count is not None and mode == "train":
                self.data_counts[key] += int(count)
        targets = {key: inputs.pop(key) for key in ROUTER_TARGET_KEYS if key in inputs}
        next_token_labels = labels[:, 1:]
        positions = (next_token_labels != -100).any(dim=0).nonzero().squeeze(1)
        video_features = None
        if "pixel_values_videos" in inputs:
            # One encoding of each video serves the LLM row's query (in the forward) and the extra queries. It is
            # made here for every micro-batch, labelled or not, so that each builds its graph in the same order:
            # ZeRO fills its gradient buckets in the order gradients become ready, which must match across processes.
            video_features = self.accelerator.unwrap_model(model).model.get_video_features(
                inputs.pop("pixel_values_videos"), inputs.pop("frames_per_segment")
            )
            inputs["video_latents"] = video_features.last_hidden_state
            inputs["video_routing_tokens"] = video_features.pooler_output
        outputs = model(**inputs, logits_to_keep=positions, use_cache=False)
        token_targets = next_token_labels[:, positions]
        token_losses = F.cross_entropy(
            outputs.logits.float().flatten(0, 1), token_targets.flatten().to(outputs.logits.device), reduction="sum"
        )
        num_tokens = (token_targets != -100).sum() if num_items_in_batch is None else num_items_in_batch
        lm_loss = token_losses / torch.as_tensor(num_tokens, device=token_losses.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            lm_loss = lm_loss * self.accelerator.num_processes
        loss = lm_loss
        retrieval_loss = outputs.similarity_loss
        if targets:
            retrieval_loss = self._query_similarity_loss(model, inputs, outputs, video_features, targets)
        if retrieval_loss is None and outputs.router_scores is not None:
            # No router label in this micro-batch: the routing path (query encoder, router) joins the loss with zero
            # weight, so every process reduces the same gradients, as DDP without an unused-parameter search,
            # FSDP and ZeRO need (a process without them would leave the others waiting).
            loss = loss + outputs.router_scores[outputs.router_scores.isfinite()].sum() * 0.0
        if retrieval_loss is not None:
            weight = self.model.config.similarity_loss_weight
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + weight * retrieval_loss.to(loss.device) / steps
            self._metrics[mode]["similarity_loss"].append(retrieval_loss.detach().item())
        self._metrics[mode]["lm_loss"].append(
            (token_losses / (token_targets != -100).sum().clamp(min=1)).detach().item()
        )
        inputs["labels"] = labels
        return (loss, outputs) if return_outputs else loss

    def _query_similarity_loss(self, model, inputs, outputs, video_features, targets) -> torch.Tensor:
        """`L_sim` over the labelled queries of the batch: each row's first query (routed by the forward) and its
        extra queries (routed against the same encoding); rows without labels take no part. None when no query of
        the batch is labelled."""
        row_mask = targets["query_label_mask"].to(outputs.router_scores.device)
        scores = [outputs.router_scores[row_mask]]
        labels = [targets["query_labels"].to(scores[0])[row_mask]]
        masks = [outputs.router_scores.isfinite()[row_mask]]
        if "extra_query_input_ids" in targets:
            scores.append(self._extra_query_scores(model, inputs["segments_per_video"], video_features, targets))
            masks.append(targets["extra_query_segment_mask"])
            labels.append(targets["extra_query_labels"].to(scores[0]))
        scores, labels, masks = (
            torch.cat(scores),
            torch.cat(labels),
            torch.cat([mask.to(scores[0].device) for mask in masks]),
        )
        if len(scores) == 0:
            return None
        config = self.model.config
        return similarity_loss(
            scores, labels, masks, margin=config.similarity_margin, use_margin=config.similarity_margin_loss
        )

    def _extra_query_scores(self, model, segments_per_video, video_features, targets) -> torch.Tensor:
        """`(Q, N_max)` router scores of each extra query against the routing tokens of its row's video, from the
        encoding the forward used (the router alone: no focus tokens are assembled for these queries)."""
        core = self.accelerator.unwrap_model(model).model
        rows = targets["extra_query_rows"]
        segment_mask = targets["extra_query_segment_mask"]
        first_segment = torch.cumsum(segments_per_video, 0) - segments_per_video
        segment_index = torch.cat(
            [
                torch.arange(first, first + count)
                for first, count in zip(first_segment[rows], segments_per_video[rows], strict=True)
            ]
        ).to(video_features.pooler_output.device)
        routing_tokens = video_features.pooler_output.new_zeros(
            *segment_mask.shape, video_features.pooler_output.shape[-1]
        )
        routing_tokens[segment_mask.to(routing_tokens.device)] = video_features.pooler_output[segment_index]
        query_states, query_mask = core.encode_query(
            targets["extra_query_input_ids"], targets["extra_query_attention_mask"]
        )
        return core.router(routing_tokens, segment_mask.to(routing_tokens.device), query_states, query_mask)


def stage_remote_code(checkpoint_folder: str | Path, output_dir: str | Path) -> list[str]:
    """Copies the checkpoint's remote-code files (`*.py`) into the folder a periodic push uploads."""
    copied = []
    for source in sorted(Path(checkpoint_folder).glob("*.py")):
        shutil.copy(source, Path(output_dir) / source.name)
        copied.append(source.name)
    return copied
