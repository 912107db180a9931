"""The look-up reference model's architecture and the circuit set in its weights by hand before
training, so that retrieval is learnt in minutes on a CPU instead of sitting at chance for
thousands of steps while an induction circuit forms by itself (the plateau before it forms grows
roughly with the square of the context length: Olsson et al., "In-context Learning and Induction
Heads", 2022; Reddy, "The mechanistic basis of data dependence and abrupt learning in an
in-context classification task", 2024).

A standard transformers class, loaded without remote code: SmolLM3 (a Llama with per-layer
RoPE), 3 layers, hidden 256, 8 heads of 32, RoPE (theta 2e6) in layer 0 only. The residual stream
is laid out as:

    dims   0- 63  token content (the tied embedding; the output layer reads it)
    dims  64- 95  the token 1 back   (written by layer 0, head 0)
    dims  96-127  the token 2 back   (layer 0, head 1)
    dims 128-159  the token 3 back   (layer 0, head 2)
    dims 160-191  the token 5 back   (layer 0, head 3)
    dims 192-255  free

Set by hand (everything else starts as transformers initialises it, with every output projection
of attention and MLP at zero, so that at step 0 the model is exactly this circuit):
- embeddings: random in the content dims, zero elsewhere;
- layer 0, heads 0-3 ("previous-token" heads at offsets 1, 2, 3, 5): query and key are constant
  (their biases) on RoPE's 8 fastest frequency pairs, phased so that a query attends to the key
  `offset` positions back (99.7% of its attention, at any length); value/output copy that token's
  first 32 content dims into the offset's subspace;
- layer 0, heads 4-6, the same at offsets 0, 1, 2, subtract those tokens' last 32 content dims
  from the content: the output layer then never repeats the last three tokens (answers here are
  lists of distinct words: aggregation's top entities, a chain, a parameter list, two values);
- layer 1 (no RoPE: matching by content, the same at any distance), six heads whose query and key
  read those subspaces and whose value/output copy into the content dims, where the tied output
  layer reads the answer:
  head 0, `KEY is VALUE` / `def NAME ( P1`: 1 back at the query matches 2 back at the answer;
  head 1, induction: the current token matches 1 back (the next parameter, the next value);
  head 2, `NAME says my ATTR is VALUE`: (1 back, 3 back) at the query match (5 back, 2 back);
  head 3, `NAME = VALUE`, chains backwards: the current token and 1 back match the content,
          and the copy is of 2 back (who is bound to it);
  head 4, a uniform mean over the context (query and key zero), a start for counting;
  head 5, a key stated twice: 2 back (the key, once a first value is said) matches 2 back in 24
          dims, and the current token repels its own occurrence in 8, so the other value is found.
Heads 6-7 of layer 1, head 7 of layer 0, layer 2 and every MLP are learnt from scratch, and
the seeded weights train too.
"""

from __future__ import annotations

from typing import Any

HEAD_DIM = 32
ROPE_THETA = 2e6
CONTENT = 64  # dims 0..CONTENT-1 hold the token embedding
COPIED = 32  # how many content dims a previous-token head copies
HALF = COPIED // 2
OFFSETS = {1: 64, 2: 96, 3: 128, 5: 160}  # tokens back -> start of the subspace holding that token
NO_REPEAT = (0, 1, 2)  # tokens back whose content is subtracted from the output
PAIRS = 8  # RoPE frequency pairs the previous-token heads use (the fastest)
POSITION_GAIN = 8.2  # query and key bias amplitude: with 8 pairs, a softmax logit gap of ~4.5 to the neighbours
COPY_GAIN = 0.5  # previous-token copies land at about the content's scale
NO_REPEAT_GAIN = 1.5  # the input is normalised to about twice the embedding: the current token nets -2x its own
MATCH_GAIN = 1.5  # query and key scale of the match heads
ANSWER_GAIN = 4.0  # how loudly a match head writes the found token for the output layer
REPEL_FROM = 24  # the second-value head: dims 0-23 match the key, 24-31 repel the value said
KEY_GAIN, REPEL_GAIN = 1.22, 1.33  # relative to MATCH_GAIN: a logit of ~20 for the key, ~-8 for the said value


def config(tokenizer: Any, layers: int = 3, hidden: int = 256, heads: int = 8, intermediate: int = 512) -> Any:
    """The architecture; the layout above needs hidden >= 192 in heads of 32, 6 heads and 2 layers."""
    from transformers import SmolLM3Config

    if hidden // heads != HEAD_DIM or hidden < max(OFFSETS.values()) + COPIED or heads < 6 or layers < 2:
        raise ValueError(
            f"the look-up circuit needs heads of {HEAD_DIM}, hidden >= 192, 6 heads, 2 layers; got {hidden}/{heads}/{layers}"
        )
    return SmolLM3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,  # the seeded heads each read their own key and value
        max_position_embeddings=1 << 17,  # RoPE has no table: this only stops length warnings
        no_rope_layers=[1] + [0] * (layers - 1),  # 1: RoPE in that layer
        attention_bias=True,  # the previous-token heads' constant query and key
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def seed_circuit(model: Any) -> None:
    """Write the circuit described above into a freshly initialised model, in place."""
    import torch

    with torch.no_grad():
        embedding = model.model.embed_tokens.weight
        embedding.zero_()
        embedding[:, :CONTENT] = torch.randn(embedding.shape[0], CONTENT)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        first = model.model.layers[0].self_attn
        for head, (offset, start) in enumerate(OFFSETS.items()):
            previous_token_head(first, head, offset, reads=0, writes=start, gain=COPY_GAIN)
        for head, offset in enumerate(NO_REPEAT, start=len(OFFSETS)):
            previous_token_head(first, head, offset, reads=CONTENT - COPIED, writes=CONTENT - COPIED, gain=-NO_REPEAT_GAIN)
        match_heads(model.model.layers[1].self_attn)


def previous_token_head(attention: Any, head: int, offset: int, reads: int, writes: int, gain: float) -> None:
    """Query and key constant and phased on RoPE's fastest pairs, so that the scores peak at the
    key `offset` tokens back; value/output copy its dims reads..reads+COPIED, times `gain`, into
    dims writes..writes+COPIED.

    transformers rotates dims (i, i + HEAD_DIM/2) as pair i by angle position * theta^(-2i/HEAD_DIM);
    with query (a, 0) and key a (cos(offset w), sin(offset w)) in every pair, the score at distance
    d is a^2 sum_i cos(w_i (d - offset)), largest at d = offset."""
    import torch

    rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
    half = HEAD_DIM // 2
    angles = offset * ROPE_THETA ** (-torch.arange(PAIRS) * 2 / HEAD_DIM)
    query, key = torch.zeros(HEAD_DIM), torch.zeros(HEAD_DIM)
    query[:PAIRS] = POSITION_GAIN
    key[:PAIRS], key[half : half + PAIRS] = POSITION_GAIN * torch.cos(angles), POSITION_GAIN * torch.sin(angles)
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
        projection.weight[rows] = 0
    attention.q_proj.bias[rows], attention.k_proj.bias[rows] = query, key
    attention.v_proj.weight[rows, reads : reads + COPIED] = torch.eye(COPIED)
    attention.o_proj.weight[writes : writes + COPIED, rows] = gain * torch.eye(COPIED)


def match_heads(attention: Any) -> None:
    """Layer 1's seeded heads: (query reads, key reads, value reads) as residual dims, then each
    head's output written into the content dims."""
    import torch

    eye = torch.eye(COPIED)
    first, second = torch.zeros(COPIED, COPIED), torch.zeros(COPIED, COPIED)
    first[:HALF, :HALF] = torch.eye(HALF)  # two matches in one head: one per half of its dims
    second[HALF:, :HALF] = torch.eye(HALF)
    # A key stated twice: most dims match the key, a few repel the value already said (a repelling
    # term adds noise at every position, so it gets only what it needs to cancel its own statement).
    stated, said = torch.zeros(COPIED, COPIED), torch.zeros(COPIED, COPIED)
    stated[:REPEL_FROM, :REPEL_FROM] = KEY_GAIN * torch.eye(REPEL_FROM)
    said[REPEL_FROM:, : COPIED - REPEL_FROM] = REPEL_GAIN * torch.eye(COPIED - REPEL_FROM)
    content, back = 0, OFFSETS
    g, pair = MATCH_GAIN, MATCH_GAIN * 2**0.5
    heads: list[tuple[list[tuple[int, Any]], list[tuple[int, Any]], int]] = [
        ([(back[1], g * eye)], [(back[2], g * eye)], content),  # KEY is VALUE
        ([(content, g * eye)], [(back[1], g * eye)], content),  # induction
        ([(back[1], pair * first), (back[3], pair * second)], [(back[5], pair * first), (back[2], pair * second)], content),
        ([(content, g * eye), (back[1], g * eye)], [(content, g * eye)], back[2]),  # NAME = VALUE, backwards
        ([], [], content),  # a mean over the context
        ([(back[2], g * stated), (content, g * said)], [(back[2], g * stated), (content, -g * said)], content),
    ]
    for head, (query, key, value) in enumerate(heads):
        rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
        for projection, reads in ((attention.q_proj, query), (attention.k_proj, key)):
            projection.weight[rows] = 0
            for start, matrix in reads:
                projection.weight[rows, start : start + COPIED] = matrix
        attention.v_proj.weight[rows] = 0
        attention.v_proj.weight[rows, value : value + COPIED] = eye
        attention.o_proj.weight[:COPIED, rows] = (ANSWER_GAIN if query else 1.0) * eye  # the mean: no match, quieter
