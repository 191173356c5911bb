"""Token classification data: CoNLL or JSON files -> word and tag lists -> sub-word-aligned labels.

Files come in two shapes:

- CoNLL-style text: one word per line with its tag in the last column (columns separated by
  tabs, or else by spaces; CoNLL-2003's four columns work as they are), a blank line between
  sentences, `-DOCSTART-` lines skipped.
- JSON/JSON Lines/Parquet: one sentence per row, a list of words (`data.text`) and a list of
  tags of the same length (`data.label`), e.g. `{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"]}`.

A tokenizer splits words into sub-words; only the first sub-word of each word carries the
word's tag, the rest get -100 and are ignored by the loss and the metrics (the convention of
BERT's NER experiments, Devlin et al., 2019).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.data.columns import LABEL, class_names_for_ids, column_name, column_values
from finetune.data.files import check_readable, file_format, read_file, resolve_path, text_codec
from finetune.data.hub import load_hub
from finetune.data.splits import TaskData, no_data_error, split_validation
from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset

TOKENS = "tokens"
IGNORED = -100  # the label torch's cross-entropy (and ours) skips
DOCSTART = "-DOCSTART-"


def token_file_format(spec: DataSection, path: Path) -> str:
    """`conll` for text files; JSON, JSON Lines and Parquet keep their own format."""
    if spec.format != "auto":
        return spec.format
    if path.suffix.lower() in (".json", ".jsonl", ".parquet"):
        return file_format(spec, path)
    return "conll"


def parse_conll(text: str, source: str, tagged: bool = True) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of (word, tag) from CoNLL text: the word is the first column, the tag the last.

    With `tagged=False` (texts to predict) a line may hold the word alone; tags are not read.
    """
    sentences: list[list[str]] = []
    tag_lists: list[list[str]] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if words:
                sentences.append(words)
                tag_lists.append(tags)
            words, tags = [], []
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if columns[0] == DOCSTART:
            continue
        if tagged and len(columns) < 2:
            raise DataError(
                f"{source}, line {number}: expected a word and its tag separated by a tab or spaces, "
                f"got {line!r}"
            )
        words.append(columns[0].strip())
        if tagged:
            tags.append(columns[-1].strip())
    if words:
        sentences.append(words)
        tag_lists.append(tags)
    return sentences, tag_lists


def read_conll(path: Path, split: str, tagged: bool = True, encoding: str = "utf-8") -> Dataset:
    """A CoNLL file as a `Dataset` with `tokens` and (when `tagged`) `labels` (tag names) columns."""
    from datasets import Dataset

    check_readable(path, encoding, split)
    sentences, tags = parse_conll(path.read_text(encoding=text_codec(encoding)), str(path), tagged)
    if not sentences:
        raise DataError(f"data.{split}: {path} holds no sentences (one `word tag` per line expected)")
    return Dataset.from_dict({TOKENS: sentences, LABEL: tags} if tagged else {TOKENS: sentences})


def word_columns(dataset: Dataset, spec: DataSection, source: str, labelled: bool = True) -> Dataset:
    """Keep the word-list (and tag-list) columns of a JSON/Parquet/hub split, renamed `tokens`, `labels`.

    A text column that holds strings rather than word lists is split on whitespace.
    """
    words = column_name(dataset, spec.text, "text", source)
    wanted = {words: TOKENS}
    if labelled:
        tags = column_name(dataset, spec.label, "label", source)
        if words == tags:
            raise DataError(f"data: text and label must be different columns (both are '{words}')")
        wanted[tags] = LABEL
    dataset = dataset.select_columns(list(wanted)).rename_columns({o: n for o, n in wanted.items() if o != n})
    if labelled:  # tags stored as ids with names (a hub ClassLabel): back to names
        dataset = class_names_for_ids(dataset, LABEL, tags, source)
    if getattr(dataset.features[TOKENS], "dtype", None) == "string":  # a Value, not a List
        dataset = dataset.map(lambda batch: {TOKENS: [text.split() for text in batch[TOKENS]]}, batched=True)
    return dataset


def check_sentences(dataset: Dataset, split: str, source: str) -> None:
    """Every row: a non-empty list of words and exactly one tag per word."""
    if len(dataset) == 0:
        raise DataError(f"data.{split}: {source} has no rows")
    for row, (words, tags) in enumerate(zip(column_values(dataset, TOKENS), column_values(dataset, LABEL))):
        if not isinstance(words, list) or not isinstance(tags, list):
            raise DataError(
                f"data.{split}: row {row + 1} of {source}: token_classification needs a list of words "
                f"(data.text) and a list of tags (data.label), got {type(words).__name__} and {type(tags).__name__}"
            )
        if len(words) != len(tags):
            raise DataError(
                f"data.{split}: row {row + 1} of {source} has {len(words)} words but {len(tags)} tags"
            )
        if any(isinstance(tag, (int, float)) for tag in tags):
            raise DataError(
                f"data.{split}: row {row + 1} of {source} has numeric tags {tags[:5]}; entity-level "
                f"metrics need tag names (B-PER, I-PER, O, ...). Write the names in the file."
            )


def tag_vocabulary(train: Dataset) -> list[str]:
    """Sorted tag names found in the training data (`O` and every B-/I- tag)."""
    return sorted({tag for tags in column_values(train, LABEL) for tag in tags})


def encode_tags(dataset: Dataset, names: list[str], split: str, source: str) -> Dataset:
    """Tag names -> ids, checking every tag is one train has."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({tag for tags in column_values(dataset, LABEL) for tag in tags} - set(index))
    if unknown:
        raise DataError(
            f"data.{split}: tags {unknown} in {source} never occur in the training data "
            f"(train tags: {names}). Fix the file, or add examples of them to train."
        )
    return dataset.map(
        lambda batch: {LABEL: [[index[t] for t in tags] for tags in batch[LABEL]]}, batched=True
    )


def read_token_split(spec: DataSection, path: Path, split: str) -> Dataset:
    """One file, CoNLL or JSON-like, as `tokens`/`labels` columns (tag names)."""
    if token_file_format(spec, path) == "conll":
        return read_conll(path, split, encoding=spec.encoding)
    return word_columns(read_file(spec, path, split), spec, str(path))


def _read_token_splits(spec: DataSection) -> tuple[dict[str, Dataset], dict[str, str]]:
    if spec.hub is not None:
        splits = load_hub(spec)
        name = spec.hub.name + (f"/{spec.hub.config}" if spec.hub.config else "")
        sources = {role: f"{name}[{role}]" for role in splits}
        return {role: word_columns(ds, spec, sources[role]) for role, ds in splits.items()}, sources
    if spec.train is None:
        raise no_data_error("token_classification")
    paths = {"train": resolve_path(spec, spec.train, "train")}
    if spec.validation is not None:
        paths["validation"] = resolve_path(spec, spec.validation, "validation")
    return {role: read_token_split(spec, path, role) for role, path in paths.items()}, {
        role: str(path) for role, path in paths.items()
    }


def load_token_data(spec: DataSection, seed: int) -> TaskData:
    """Read, check and tag-encode the train and validation splits of a token classification recipe."""
    raw, sources = _read_token_splits(spec)
    for role, dataset in raw.items():
        check_sentences(dataset, role, sources[role])
    names = tag_vocabulary(raw["train"])
    if len(names) < 2:
        raise DataError(f"data.label: the training data has a single tag {names}; tagging needs at least two")
    splits = {role: encode_tags(dataset, names, role, sources[role]) for role, dataset in raw.items()}
    train, validation = splits["train"], splits.get("validation")
    if validation is None:
        train, validation = split_validation(train, spec, seed, stratify=False, source=sources["train"])
        sources["validation"] = f"{spec.validation_fraction:.0%} of {sources['train']} (seed {seed})"
    if spec.max_train_samples is not None and spec.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(spec.max_train_samples))
    if spec.max_eval_samples is not None and spec.max_eval_samples < len(validation):
        validation = validation.select(range(spec.max_eval_samples))
    return TaskData(
        train=train, validation=validation, task="token_classification", label_names=names, sources=sources
    )


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """One label per sub-word: the word's label on its first sub-word, -100 elsewhere (and on specials)."""
    aligned = []
    previous = None
    for word in word_ids:
        aligned.append(IGNORED if word is None or word == previous else word_labels[word])
        previous = word
    return aligned


def require_fast_tokenizer(tokenizer: Any, where: str) -> None:
    """Only fast (Rust) tokenizers have `word_ids()`, which maps sub-words back to their words."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"{where}: token_classification needs a fast (Rust) tokenizer to map sub-words back to "
            f"words; {type(tokenizer).__name__} is not one"
        )


def tokenize_words(dataset: Dataset, tokenizer: Any, max_length: int) -> Dataset:
    """Tokenize word lists (truncating) and align word labels to sub-words; adds a `length` column."""
    require_fast_tokenizer(tokenizer, "model.name")
    labelled = LABEL in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[TOKENS], is_split_into_words=True, truncation=True, max_length=max_length)
        if labelled:
            encoded[LABEL] = [align_labels(encoded.word_ids(i), tags) for i, tags in enumerate(batch[LABEL])]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=[TOKENS], desc="Tokenizing words")


def token_collator(tokenizer: Any) -> Any:
    """Pads inputs and labels (with -100) per batch."""
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED)
