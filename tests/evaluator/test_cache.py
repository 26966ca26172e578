"""Caches kept between evaluations are bounded: the least recently used entry goes first."""

from __future__ import annotations

from evaluator_service.cache import BoundedCache


def test_a_bounded_cache_keeps_its_capacity_and_drops_the_least_recently_used_entry():
    cache: BoundedCache[str] = BoundedCache("datasets", 2)
    built = []

    def make(key: str):
        return lambda: built.append(key) or key.upper()

    cache.get_or_create("a", make("a"))
    cache.get_or_create("b", make("b"))
    assert cache.get_or_create("a", make("a")) == "A"  # a is now the most recent
    cache.get_or_create("c", make("c"))  # drops b
    cache.get_or_create("b", make("b"))  # built again; drops a

    assert len(cache) == 2 and built == ["a", "b", "c", "b"]


def test_the_heap_limits_the_server_sets_at_start_are_accepted_by_this_glibc():
    from ganworks.heap import limit_heap_growth
    from evaluator_service.settings import EvaluatorSettings

    settings = EvaluatorSettings()
    assert limit_heap_growth(settings.malloc_arena_max, settings.malloc_mmap_threshold) is True


def test_what_a_bounded_cache_drops_is_counted_and_scraped_as_evictions():
    from prometheus_client import generate_latest

    from evaluator_service.exporter import EvaluatorMetrics

    metrics, cache = EvaluatorMetrics(), BoundedCache("datasets", 2)
    metrics.watch_sizes(datasets=cache)
    for key in "abcab":  # a, b fill it; c drops a; a drops b; b drops c
        cache.get_or_create(key, lambda: key)

    scraped = generate_latest(metrics.registry).decode()
    assert cache.evictions == 3
    assert 'ganworks_evaluator_cache_evictions_total{cache="datasets"} 3.0' in scraped
