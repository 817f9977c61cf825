"""SmolVLA's flow-matching loss with the frozen part of the prefix computed once per validation batch.

SmolVLA's prefix is the image tokens, the instruction tokens and one state token. Its attention mask keeps the
image and instruction tokens from attending to the state token or the actions, so where the VLM (vision encoder,
connector, text layers) is frozen their keys and values at every VLM layer are the same for the global model and
every reply of a round. ``freeze_batch`` computes them once, with the batch's noise and time; ``cached_loss`` then
runs per reply only what a reply can change: the state token through the VLM layers and the action expert.

The loss equals ``SmolVLAPolicy.forward``'s with the same noise and time, to float32 rounding: the same LeRobot
modules run on the same inputs, the image and instruction tokens through the cache ``sample_actions`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from transformers import DynamicCache


@dataclass(frozen=True)
class FrozenPrefix:
    """One validation batch as every reply sees it: the image and instruction tokens' keys and values at each VLM
    layer (after RoPE, [batch, kv heads, tokens, head dim]), their padding, and the batch's flow-matching draws."""

    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    pad_masks: torch.Tensor
    state: torch.Tensor
    x_t: torch.Tensor
    u_t: torch.Tensor
    time: torch.Tensor
    actions_is_pad: torch.Tensor | None


def prefix_is_frozen(policy) -> bool:
    """Whether no trainable parameter (what a reply carries, ``node.params.trainable_names``) reaches the image and
    instruction tokens: the whole VLM frozen, the prefix not padded and the inference cache on. A VLM that trains
    (the ``learn`` spec) is scored without the cache."""
    cfg = policy.config
    vlm = policy.model.vlm_with_expert.vlm
    return (not any(p.requires_grad for p in vlm.parameters()) and cfg.prefix_length <= 0 and cfg.use_cache
            and not cfg.adapt_to_pi_aloha)


@torch.no_grad()
def freeze_batch(policy, batch: dict, seed: int) -> FrozenPrefix:
    """Compute what no reply changes for a preprocessed ``batch``; noise and time are drawn from ``seed`` in the
    order ``policy.forward`` draws them, so the loss matches ``mean_loss`` with the same seed."""
    model = policy.model
    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    actions = policy.prepare_action(batch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        noise = model.sample_noise(actions.shape, actions.device)
        time = model.sample_time(actions.shape[0], actions.device)
    t = time[:, None, None]
    embs, pad_masks, att_masks = model.embed_prefix(images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                                                    batch[OBS_LANGUAGE_ATTENTION_MASK], state=state)
    if att_masks[:, :-1].any() or not att_masks[:, -1].all():
        raise RuntimeError("SmolVLA's image and instruction tokens no longer form one attention block before the "
                           "state token: the frozen prefix cannot be reused (has LeRobot's embed_prefix changed?)")
    embs, pad_masks, att_masks = embs[:, :-1], pad_masks[:, :-1], att_masks[:, :-1]  # the state token is last
    _, cache = model.vlm_with_expert.forward(
        attention_mask=make_att_2d_masks(pad_masks, att_masks), position_ids=torch.cumsum(pad_masks, dim=1) - 1,
        past_key_values=None, inputs_embeds=[embs, None], use_cache=True)
    kv = tuple((layer.keys, layer.values) for layer in cache.layers)
    return FrozenPrefix(kv, pad_masks, state, t * noise + (1 - t) * actions, noise - actions, time,
                        batch.get("action_is_pad"))


def _append_state(vlm_with_expert, cache: DynamicCache, state_emb: torch.Tensor,
                  pad_masks: torch.Tensor) -> torch.Tensor:
    """Run the state token through the VLM layers, appending its keys and values to ``cache``; the state token
    attends to every unpadded image and instruction token and to itself, as in the full forward. Returns the
    prefix's padding mask, the state token's included."""
    layers = vlm_with_expert.get_model_layers([vlm_with_expert.get_vlm_model().text_model,
                                               vlm_with_expert.lm_expert])
    batch_size = state_emb.shape[0]
    ones = torch.ones(batch_size, 1, dtype=torch.bool, device=pad_masks.device)
    mask = torch.cat([pad_masks, ones], dim=1)
    position = pad_masks.sum(dim=1, keepdim=True)  # cumsum(pad) - 1 at the state token
    head_dim = vlm_with_expert.vlm.config.text_config.head_dim
    hidden = state_emb
    for i in range(vlm_with_expert.num_vlm_layers):
        (att,), cache = vlm_with_expert.forward_attn_layer(
            layers, [hidden, None], i, position, mask[:, None, :], batch_size, head_dim, use_cache=True,
            past_key_values=cache)
        layer = layers[0][i]
        out = layer.self_attn.o_proj(att.to(layer.self_attn.o_proj.weight.dtype)) + hidden
        hidden = layer.mlp(layer.post_attention_layernorm(out)) + out
    return mask


@torch.no_grad()
def cached_loss(policy, frozen: FrozenPrefix) -> torch.Tensor:
    """The batch's mean flow-matching loss (``SmolVLAPolicy.forward``'s reduction) under the policy's current
    trainable parameters, reusing the frozen prefix."""
    model = policy.model
    cache = DynamicCache(list(frozen.kv))  # fresh layers: update() concatenates, the round's tensors stay as they are
    state_emb = model.state_proj(frozen.state)[:, None, :]
    pad_masks = _append_state(model.vlm_with_expert, cache, state_emb, frozen.pad_masks)
    v_t = model.denoise_step(prefix_pad_masks=pad_masks, past_key_values=cache, x_t=frozen.x_t,
                             timestep=frozen.time)
    losses = F.mse_loss(frozen.u_t, v_t, reduction="none")
    losses = losses[:, :, :policy.config.action_feature.shape[0]]
    if frozen.actions_is_pad is None:
        return losses.mean()
    losses = losses * (~frozen.actions_is_pad).unsqueeze(-1)
    return losses.sum() / ((~frozen.actions_is_pad).sum() * losses.shape[-1]).clamp_min(1)


def mean_cached_loss(policy, prefixes: list[FrozenPrefix]) -> float:
    """Mean loss over the batches, weighted by their frames as ``node.train.mean_loss`` weighs them."""
    policy.eval()
    total, count = 0.0, 0
    for frozen in prefixes:
        n = len(frozen.x_t)
        total += float(cached_loss(policy, frozen)) * n
        count += n
    return total / max(count, 1)
