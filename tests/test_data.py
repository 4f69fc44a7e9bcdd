import pandas as pd

from tasks.data import clean, grouped_split

MAP = {"fresh": "positive", "rotten": "negative"}


def frame():
    rows = [("fresh", "Great fun", "A"), ("rotten", "  ", "A"), ("plot", "A man walks", "B"),
            ("rotten", "great   FUN", "C"), ("rotten", "Boring", "C"), ("fresh", None, "D")]
    rows += [("fresh", f"good {i}", f"M{i % 7}") for i in range(40)]
    return pd.DataFrame(rows, columns=["category", "text", "movie_name"])


def test_clean_drops_plot_empty_and_duplicates():
    df = clean(frame(), MAP)
    assert set(df["label"]) == {"positive", "negative"}
    assert "A man walks" not in set(df["text"])
    assert not (df["text"].str.strip() == "").any() and df["text"].notna().all()
    assert len(df[df["text"].str.lower().str.contains("great")]) == 1   # duplicate after normalising


def test_grouped_split_keeps_movies_whole_and_is_reproducible():
    df = clean(frame(), MAP)
    parts = grouped_split(df, "movie_name", {"test": 8, "validation": 5}, seed=1)
    groups = [set(p["movie_name"]) for p in parts.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(p) for p in parts.values()) == len(df)
    again = grouped_split(df, "movie_name", {"test": 8, "validation": 5}, seed=1)
    assert all(parts[s].equals(again[s]) for s in parts)
