"""Task specifications with GLUE conventions (fields, label sets, the metrics GLUE reports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    pair: bool  # two text fields (sentence-pair task)
    regression: bool
    labels: tuple[str, ...]  # class names in id order; () for regression
    metrics: tuple[str, ...]  # first one is the task's headline metric
    glue_folder: str | None = None  # folder name in the official GLUE download
    causal: bool = False  # instruction tuning of a decoder: token-level loss, eval loss and perplexity

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.labels)


TASKS: dict[str, TaskSpec] = {
    "rotten-tomatoes": TaskSpec("rotten-tomatoes", False, False, ("rotten", "fresh"), ("accuracy", "f1")),
    "sst2": TaskSpec("sst2", False, False, ("negative", "positive"), ("accuracy",), "SST-2"),
    "cola": TaskSpec("cola", False, False, ("unacceptable", "acceptable"), ("matthews_corr",), "CoLA"),
    "mrpc": TaskSpec("mrpc", True, False, ("not_equivalent", "equivalent"), ("accuracy", "f1"), "MRPC"),
    "rte": TaskSpec("rte", True, False, ("entailment", "not_entailment"), ("accuracy",), "RTE"),
    "qnli": TaskSpec("qnli", True, False, ("entailment", "not_entailment"), ("accuracy",), "QNLI"),
    "stsb": TaskSpec("stsb", True, True, (), ("pearson", "spearman"), "STS-B"),
    # The user's own --train-file/--eval-file; labels and pair-ness are read from the file.
    "custom": TaskSpec("custom", False, False, (), ("accuracy", "f1")),
    # Instruction tuning (the paper's LLaMA setting): Alpaca-format JSON in --train-file, the Alpaca prompt template.
    "alpaca": TaskSpec("alpaca", False, False, (), ("loss", "perplexity"), causal=True),
}
FILE_TASKS = ("custom", "alpaca")  # tasks whose data comes from --train-file
