"""What a run got wrong, from its record alone: one row per trial, accuracy per alphabet, the
characters most often confused, and the trials two methods disagree on."""
from __future__ import annotations

import pandas as pd

from fewshot_bench.errors import UserError
from fewshot_bench.stats import set_interval


def trial_table(record: dict) -> pd.DataFrame:
    """One row per trial of a one-shot record: draw, group, the query, the correct and the chosen
    support (identities), both scores and the margin by which the wrong choice won (``wrong_by``,
    <= 0 for a right answer). K-shot: a class stands for its first support image."""
    rows = []
    for draw in record["draws"]:
        if not draw.get("sets"):
            raise UserError(f"run {record['run_id']} keeps no trial identities (recorded before they were "
                            "kept, packed by `bench store pack`, or a verification run); rerun it to see its trials")
        trial = 0
        for ts in draw["sets"]:
            support = _class_images(ts)
            for query in ts["queries"]:
                answer, chosen = draw["answers"][trial], draw["predictions"][trial]
                rows.append({"trial_seed": draw["trial_seed"], "group": ts["group"], "trial": trial, "query": query,
                             "correct_support": support[answer], "chosen_support": support[chosen],
                             "correct": bool(draw["correct"][trial]), "score_correct": draw["score_correct"][trial],
                             "score_chosen": draw["score_chosen"][trial]})
                trial += 1
    frame = pd.DataFrame(rows)
    frame["wrong_by"] = frame["score_chosen"] - frame["score_correct"]
    frame["alphabet"] = [_alphabet(r) for r in frame.itertuples()]
    return frame


def _class_images(ts: dict) -> list[str]:
    if "support_class" not in ts:
        return ts["support"]
    first = {}
    for image, cls in zip(ts["support"], ts["support_class"]):
        first.setdefault(cls, image)
    return [first[c] for c in sorted(first)]


def _alphabet(row) -> str:
    """Omniglot ids start with the alphabet; Lake's runs and MNIST are named by their set."""
    if "/character" in row.query:
        return row.query.split("/")[0]
    return row.group.split("#")[0] if "#" in row.group else "mnist" if row.query.startswith("mnist/") else row.group


def failures(record: dict, limit: int | None = None) -> pd.DataFrame:
    """The wrong trials, most confidently wrong first (largest margin of the chosen over the
    correct support's score)."""
    table = trial_table(record)
    wrong = table[~table["correct"]].sort_values("wrong_by", ascending=False, kind="stable")
    return wrong.head(limit) if limit else wrong


def distinct_failures(record: dict, limit: int | None = None) -> pd.DataFrame:
    """The wrong trials as `failures` orders them, a trial that several draws hold (the same
    query, correct and chosen support) once, with ``draws``: how many draws got it wrong so."""
    wrong = failures(record)
    key = ["query", "correct_support", "chosen_support"]
    counts = wrong.groupby(key, sort=False).size().rename("draws")
    distinct = wrong.drop_duplicates(key).join(counts, on=key)
    return distinct.head(limit) if limit else distinct


def per_alphabet(record: dict) -> pd.DataFrame:
    """Accuracy (%) per alphabet with its 95% half-width over that alphabet's trial sets (of all
    draws; one set, or sets of one trial each, give a half-width over what there is)."""
    table = trial_table(record)
    table["set"] = table["trial_seed"].astype(str) + "/" + table["group"]
    rows = {}
    for alphabet, part in table.groupby("alphabet"):
        accuracy, half = set_interval(part["correct"], part["set"])
        rows[alphabet] = {"trials": len(part), "accuracy": 100 * accuracy, "ci95": 100 * half}
    return pd.DataFrame.from_dict(rows, orient="index").sort_values("accuracy")


def confused_characters(record: dict, limit: int = 10) -> pd.DataFrame:
    """Pairs of characters (the correct support's, the wrongly chosen one's) by how often they were
    confused, either way round; an Omniglot image's character is its id without the drawer, a
    class of Lake's runs is its training image."""
    wrong = failures(record)
    if wrong.empty:
        return pd.DataFrame(columns=["character", "confused_with", "times"])
    character = lambda image: image.rsplit("/", 1)[0] if "/character" in image else image  # noqa: E731
    pairs = [tuple(sorted((character(a), character(c))))
             for a, c in zip(wrong["correct_support"], wrong["chosen_support"])]
    counts = pd.Series(pairs).value_counts().head(limit)
    return pd.DataFrame({"character": [a for a, _ in counts.index], "confused_with": [b for _, b in counts.index],
                         "times": counts.to_numpy()})


def disagreements(a: dict, b: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials (the McNemar discordant pairs) where ``a`` is right and ``b`` wrong, and the reverse;
    both records must hold the same trials."""
    ta, tb = trial_table(a), trial_table(b)
    if list(ta["query"]) != list(tb["query"]) or list(ta["correct_support"]) != list(tb["correct_support"]):
        raise UserError(f"runs {a['run_id']} and {b['run_id']} are not on the same trials")
    both = ta.assign(b_chosen=tb["chosen_support"], b_correct=tb["correct"], b_wrong_by=tb["wrong_by"])
    only_a = both[both["correct"] & ~both["b_correct"]].sort_values("b_wrong_by", ascending=False, kind="stable")
    only_b = both[~both["correct"] & both["b_correct"]].sort_values("wrong_by", ascending=False, kind="stable")
    return only_a, only_b


def verification_errors(record: dict, limit: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """False accepts (different characters scored above the threshold, highest first) and false
    rejects (one character scored below it, lowest first) of a verification record."""
    frames = []
    for draw in record["draws"]:
        if "first" not in draw:
            raise UserError(f"run {record['run_id']} keeps no pair identities; rerun it to see its pairs")
        frames.append(pd.DataFrame({"first": draw["first"], "second": draw["second"], "same": draw["same"],
                                    "score": draw["pair_scores"], "threshold": draw["threshold"]}))
    pairs = pd.concat(frames, ignore_index=True)
    accepted = pairs["score"] > pairs["threshold"]
    false_accepts = pairs[accepted & (pairs["same"] == 0)].sort_values("score", ascending=False, kind="stable")
    false_rejects = pairs[~accepted & (pairs["same"] == 1)].sort_values("score", kind="stable")
    return (false_accepts.head(limit), false_rejects.head(limit)) if limit else (false_accepts, false_rejects)
