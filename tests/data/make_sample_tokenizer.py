"""Makes tests/data/sample_tokenizer.json, the tokenizer conf/tokens.yaml selects with: a byte-level BPE of
4,000 tokens (and <|endoftext|>) trained on the bundled Pile sample with Hugging Face `tokenizers`.

    python tests/data/make_sample_tokenizer.py     (pip install "dsir-spark[tokens]"; no download)
"""

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).parent

if __name__ == "__main__":
    texts = [json.loads(line)["contents"] for line in open(HERE / "toy_pile_data.jsonl", encoding="utf-8")]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=4000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(HERE / "sample_tokenizer.json"))
    print(f"wrote {HERE / 'sample_tokenizer.json'} ({tokenizer.get_vocab_size():,} tokens)")
