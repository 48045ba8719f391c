"""Which of the product's maps answers which question, in one sentence shown wherever a user
chooses a map (the dock, the Processing descriptions); the figures behind it are in the README's
"Which map answers which question"."""

WHICH_MAP = ("Which map: to fill in a species hidden inside a region where other species stay recorded, "
             "M3's infill map (it reads which species occur together, and leads every baseline on hidden "
             "blocks). To ask where else a species may lie, far from any record, no map here is reliable: "
             "the aux-only map and the blurred records each rank some held-out surveys best, M3's map none; "
             "look at the aux-only map first and compare.")
