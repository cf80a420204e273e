"""Generate the demo store domain into data/raw, deterministically.

The output is committed; rerun this only to change the demo domain:

    python data/make_demo.py --out data/raw --seed 7

Products and policies are Markdown files with YAML front matter. The training sets
(router, generator) and the golden evaluation set are JSONL. Golden questions use
phrasings that never appear in the training sets, so the leakage check has teeth.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

CATEGORIES: dict[str, dict] = {
    "headphones": {
        "brands": ["Aurora", "Basswell", "Quietline"],
        "nouns": ["ANC Headphones", "Studio Earbuds", "Travel Headset"],
        "price": (39.0, 349.0),
        "specs": {"battery_life": ["20 h", "30 h", "40 h"], "weight": ["180 g", "250 g", "310 g"]},
    },
    "laptops": {
        "brands": ["Northbook", "Kestrel", "Lumen"],
        "nouns": ["Air 13", "Pro 15", "Creator 16"],
        "price": (599.0, 2499.0),
        "specs": {"ram": ["8 GB", "16 GB", "32 GB"], "storage": ["256 GB SSD", "512 GB SSD", "1 TB SSD"]},
    },
    "kettles": {
        "brands": ["Brewmaster", "Kettlo", "Steamly"],
        "nouns": ["Glass Kettle", "Gooseneck Kettle", "Smart Kettle"],
        "price": (19.0, 149.0),
        "specs": {"capacity": ["1.0 l", "1.5 l", "1.7 l"], "power": ["1500 W", "2200 W", "3000 W"]},
    },
    "running-shoes": {
        "brands": ["Stride", "Pacer", "Trailfox"],
        "nouns": ["Road Runner", "Trail Pro", "Daily Trainer"],
        "price": (59.0, 219.0),
        "specs": {"drop": ["4 mm", "8 mm", "10 mm"], "weight": ["220 g", "260 g", "300 g"]},
    },
}

POLICIES: dict[str, tuple[str, str]] = {
    "shipping": (
        "Shipping policy",
        "Standard shipping takes 3 to 5 business days and costs 4.99 USD. "
        "Orders over 50 USD ship free. Express shipping takes 1 business day and costs 14.99 USD.",
    ),
    "returns": (
        "Returns policy",
        "You can return any unused item within 30 days of delivery for a full refund. "
        "Opened headphones can be returned within 14 days. Refunds reach your card within 5 business days.",
    ),
    "warranty": (
        "Warranty policy",
        "Every product carries the manufacturer warranty stated on its page. "
        "To claim warranty, bring the receipt to any store or open a ticket on the support page.",
    ),
    "payment": (
        "Payment methods",
        "We accept Visa, Mastercard, PayPal and gift cards. "
        "Cash is accepted in stores only. Instalments are available on orders over 300 USD.",
    ),
    "store-hours": (
        "Store hours",
        "Stores are open Monday to Saturday from 9:00 to 20:00 and Sunday from 10:00 to 18:00. "
        "Stores are closed on public holidays.",
    ),
}

REFUSAL = "I'm sorry, the store documents I have do not contain that information."

# Training phrasings (router and generator) and evaluation phrasings never overlap.
TRAIN_PRICE = ["How much does the {name} cost?", "What is the price of the {name}?"]
TRAIN_STOCK = ["Is the {name} in stock?", "How many {name} units do you have?"]
GOLD_PRICE = ["What would I pay for the {name}?"]
GOLD_STOCK = ["How many of the {name} are left in the shop?"]
TRAIN_POLICY = {
    "shipping": ["How long does standard shipping take?", "How much is shipping?"],
    "returns": ["Can I return an item I bought?", "How many days do I have to return something?"],
    "warranty": ["How do I claim warranty?"],
    "payment": ["Which payment methods do you accept?", "Can I pay with PayPal?"],
    "store-hours": ["When are your stores open?", "Are you open on Sunday?"],
}
GOLD_POLICY = {
    "shipping": ("What does express delivery cost?", ["14.99"]),
    "returns": ("Within how many days can opened headphones be sent back?", ["14"]),
    "payment": ("Do you offer instalments, and from what order value?", ["300"]),
    "store-hours": ("At what time do stores close on Sunday?", ["18:00"]),
}
SMALL_TALK = ["hi", "hello there", "thanks a lot!", "good morning", "how are you?", "you are great",
              "bye", "thank you so much", "hey", "have a nice day"]
OUT_OF_SCOPE = ["what is the capital of France?", "write me a poem about the sea",
                "who won the football match yesterday?", "what is 17 times 23?",
                "tell me a joke about cats", "how do I fix my car engine?",
                "what's the weather tomorrow?", "translate hello into Spanish",
                "who is the president of Brazil?", "recommend a good movie"]
GOLD_UNANSWERABLE = ["Do you sell lawn mowers?", "What is the price of the Zephyr X9 drone?",
                     "Which colour options does the store gift card come in?"]


def _typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters, the commonest real typo."""
    positions = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not positions:
        return text
    i = rng.choice(positions)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def make_products(rng: random.Random) -> list[dict]:
    products = []
    for category, spec in CATEGORIES.items():
        for brand in spec["brands"]:
            for noun in rng.sample(spec["nouns"], 2):
                low, high = spec["price"]
                products.append(
                    {
                        "id": f"p-{len(products) + 1:03d}",
                        "name": f"{brand} {noun}",
                        "category": category,
                        "brand": brand,
                        "price": round(rng.uniform(low, high), 0) - 0.01,
                        "currency": "USD",
                        "stock": rng.randint(0, 40),
                        "warranty": rng.choice(["1 year", "2 years", "3 years"]),
                        "updated_at": f"2026-11-{rng.randint(1, 20):02d}",
                        "specs": {k: rng.choice(v) for k, v in spec["specs"].items()},
                    }
                )
    return products


def render_product(p: dict) -> str:
    specs = "\n".join(f"- {k.replace('_', ' ').capitalize()}: {v}" for k, v in p["specs"].items())
    body = (
        f"# {p['name']}\n\n"
        f"The {p['name']} is sold in our {p['category']} range by {p['brand']}. "
        f"Price: {p['price']:.2f} {p['currency']}. In stock: {p['stock']} units. "
        f"Warranty: {p['warranty']}.\n\n## Specs\n{specs}\n"
    )
    return "---\n" + yaml.safe_dump(p, sort_keys=False) + "---\n" + body


def render_policy(pid: str, title: str, text: str) -> str:
    front = {"id": f"pol-{pid}", "name": title, "category": "policy", "updated_at": "2026-10-01"}
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + f"---\n# {title}\n\n{text}\n"


def product_chunk(p: dict) -> str:
    """The text the index returns for this product's first section (heading path + body), so
    training contexts look exactly like retrieved ones."""
    return (f"{p['name']}: The {p['name']} is sold in our {p['category']} range by {p['brand']}. "
            f"Price: {p['price']:.2f} {p['currency']}. In stock: {p['stock']} units. Warranty: {p['warranty']}.")


def price_answer(p: dict) -> str:
    return f"The {p['name']} costs {p['price']:.2f} {p['currency']} [{p['id']}]."


def stock_answer(p: dict) -> str:
    if p["stock"] == 0:
        return f"The {p['name']} is out of stock right now (0 units) [{p['id']}]."
    return f"Yes, we have {p['stock']} units of the {p['name']} in stock [{p['id']}]."


def make_generator_set(products: list[dict], rng: random.Random) -> list[dict]:
    examples = []
    train_products = products[: int(len(products) * 0.75)]
    for p in train_products:
        for template, answer in ((rng.choice(TRAIN_PRICE), price_answer), (rng.choice(TRAIN_STOCK), stock_answer)):
            others = rng.sample([o for o in products if o["id"] != p["id"]], 3)
            answerable = rng.random() > 0.2
            context = [{"doc_id": o["id"], "text": product_chunk(o)} for o in others]
            if answerable:
                context.insert(rng.randrange(len(context) + 1), {"doc_id": p["id"], "text": product_chunk(p)})
            examples.append(
                {
                    "id": f"gen-{len(examples) + 1:04d}",
                    "question": template.format(name=p["name"]),
                    "context": context,
                    "answer": answer(p) if answerable else REFUSAL,
                    "answerable": answerable,
                }
            )
    return examples


def make_router_set(products: list[dict], rng: random.Random) -> list[dict]:
    rows = []
    for p in products:
        for template in TRAIN_PRICE + TRAIN_STOCK:
            rows.append({"text": template.format(name=p["name"]), "intent": "catalog"})
    for questions in TRAIN_POLICY.values():
        for q in questions:
            rows += [{"text": q, "intent": "policy"}, {"text": _typo(q, rng), "intent": "policy"},
                     {"text": q.lower().rstrip("?"), "intent": "policy"}]
    for q in SMALL_TALK:
        rows += [{"text": q, "intent": "small_talk"}, {"text": _typo(q, rng), "intent": "small_talk"}]
    for q in OUT_OF_SCOPE:
        rows += [{"text": q, "intent": "out_of_scope"}, {"text": _typo(q, rng), "intent": "out_of_scope"}]
    rng.shuffle(rows)
    return [{"id": f"r-{i + 1:04d}", **row} for i, row in enumerate(rows)]


def make_golden_set(products: list[dict], rng: random.Random) -> list[dict]:
    golden = []

    def add(question, intent, doc_ids, key_facts, answer, answerable):
        golden.append({"id": f"g-{len(golden) + 1:03d}", "question": question, "intent": intent,
                       "gold_doc_ids": doc_ids, "key_facts": key_facts, "answer": answer,
                       "answerable": answerable})

    for p in products[::2]:
        add(GOLD_PRICE[0].format(name=p["name"]), "catalog", [p["id"]], [f"{p['price']:.2f}"],
            price_answer(p), True)
    for p in products[1::3]:
        add(GOLD_STOCK[0].format(name=p["name"]), "catalog", [p["id"]], [str(p["stock"])],
            stock_answer(p), True)
    for pid, (question, facts) in GOLD_POLICY.items():
        add(question, "policy", [f"pol-{pid}"], facts, POLICIES[pid][1], True)
    for question in GOLD_UNANSWERABLE:
        add(question, "catalog", [], [], REFUSAL, False)
    for question in ["good evening!", "cheers, that helped"]:
        add(question, "small_talk", [], [], "", False)
    return golden


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    docs_path = args.out / "documents"
    docs_path.mkdir(parents=True, exist_ok=True)
    for old in docs_path.glob("*.md"):
        old.unlink()
    products = make_products(rng)
    for p in products:
        (docs_path / f"{p['id']}.md").write_text(render_product(p), encoding="utf-8")
    for pid, (title, text) in POLICIES.items():
        (docs_path / f"pol-{pid}.md").write_text(render_policy(pid, title, text), encoding="utf-8")
    write_jsonl(args.out / "router.jsonl", make_router_set(products, rng))
    write_jsonl(args.out / "generator.jsonl", make_generator_set(products, rng))
    write_jsonl(args.out / "golden.jsonl", make_golden_set(products, rng))


if __name__ == "__main__":
    main()
