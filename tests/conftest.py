import os

# Tests that spawn processes give each one thread (2-core CI machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "data" / "benchmarks"


@pytest.fixture
def tiny_corpus():
    from searche1.data.corpus import Document, make_contents

    texts = [
        ("Zorvak", "Zorvak is a painter born in 1873 in the city of Melin."),
        ("Melin", "Melin is a city in Tarvos, founded in 1602."),
        ("Kelmar", "Kelmar is a company founded in 1901 by Zorvak, headquartered in Dosta."),
        ("Dosta", "Dosta is a city in Quenland, founded in 1410."),
        ("Zorvak (ship)", "Zorvak was a ship built in 1871 in Dosta."),
        ("Tarvos", "Tarvos is a country whose language is Velsh; independence in 1822."),
    ]
    return [Document(str(i), make_contents(t, x)) for i, (t, x) in enumerate(texts)]
