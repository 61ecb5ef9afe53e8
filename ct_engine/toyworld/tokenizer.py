"""A word-level tokenizer trained on the toy corpus, saved as a ``PreTrainedTokenizerFast``.

Words are runs of word characters or of punctuation (the ``Whitespace`` pre-tokenizer), so
every invented name is exactly one token. Special tokens have fixed ids, like
:mod:`ct_engine.tiny`: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3. Encoding with
``add_special_tokens=True`` prepends ``<bos>`` (as Llama tokenizers do);
``add_special_tokens=False`` does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ct_engine.toyworld.templates import template_words
from ct_engine.toyworld.world import World

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def train_tokenizer(docs: Iterable[str], world: World, max_vocab: int = 4000):
    """Train a word-level ``tokenizers.Tokenizer`` on ``docs``.

    The world's entity names and every template word are added to the training text, so the
    vocabulary holds them even when a small corpus misses some.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab, min_frequency=1, special_tokens=list(SPECIALS), show_progress=False
    )
    names = [n for group in world.entity_names().values() for n in group]
    extra = [" ".join(names), " ".join(sorted(template_words()))]
    tok.train_from_iterator(list(docs) + extra, trainer=trainer)
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            raise AssertionError(f"special token {s} got id {tok.token_to_id(s)}, expected {i}")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", BOS_ID)]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def save_tokenizer(tok, directory: str | Path):
    """Save ``tok`` as a Hugging Face ``PreTrainedTokenizerFast`` in ``directory``; return it."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(Path(directory))
    return fast
