"""Recommenders behind one interface, and their offline evaluation (issue 14, parts 3 and 4).

In memory, numpy/scipy/implicit only: a loader (database, file) fills :class:`Interactions` and the optional
:class:`ItemFeatures` / :class:`UserFeatures`; every algorithm fits on them and answers
``recommend(user, k, exclude)`` (with reasons) and the vectorised ``recommend_all(users, k)``.

- ``data``: the input types; ``files``: interaction files (CSV/TSV, header or not, bad lines by number);
- ``base``: the interface, the catalogue (eligibility: validity, target regions and models), top-k;
- ``popularity``, ``itemknn``, ``learned`` (ALS / BPR from ``implicit``), ``personalized`` (the hybrid);
- ``algorithms``: the names; ``evaluate``: split, metrics, evaluation;
- ``cli``: ``drivesight cloud recommend topk|evaluate|split``.

Errors::

    RecommendError
     ├── InteractionFileError   a file that cannot be read, or bad lines (each with its number)
     ├── UnknownAlgorithmError  a name that is not one of ``algorithms.NAMES``
     └── NotFittedError         recommend before fit
"""
