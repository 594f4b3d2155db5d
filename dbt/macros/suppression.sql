{#-
  Small-cell suppression (privacy by construction, issue "Certification gate" item 3).

  small_cell_suppression(cells, key, size, families, passes=3) returns a SELECT with one row per
  row of the CTE ``cells``: (cell_key, suppressed, suppression).

  - Primary: a cell built from fewer than var('min_cell_size') units (sessions unless the table's
    docs say otherwise; default 10, as statistics offices commonly use) is suppressed.
  - Complementary: ``families`` names columns of ``cells`` that hold a sibling-set id (NULL when
    the cell belongs to no set of that family). The cells of one sibling set partition a total
    that is published (in the same table or another certified one). If exactly one cell of a set
    is suppressed, total minus the others would give it back: the smallest unsuppressed cell of
    the set (ties: by key) is suppressed too. A new suppression can leave exactly one suppressed
    cell in a set of another family, so the rule is applied to every family in turn, ``passes``
    times. Rounds that still leave a set with exactly one suppressed cell fail the generic test
    ``suppression_complete`` (error severity: publication is blocked, never the privacy).
  - ``unrecorded`` (optional SQL over ``cells``): cells of a measure the source does not record
    at all (no unit has the value, e.g. ASR confidence from typed text): they disclose nothing,
    are never suppressed and never chosen as a complementary cell; their value shows as NULL
    with n = 0 (not available), not as withheld.

  The caller NULLs every count, rate and interval of a suppressed row and keeps its identifiers.
-#}
{% macro small_cell_suppression(cells, key, size, families, passes=3, unrecorded=none) -%}
{%- set k = var('min_cell_size') -%}
{%- set small = "coalesce((" ~ size ~ "), 0) < " ~ k ~ (" and not coalesce((" ~ unrecorded ~ "), false)" if unrecorded else "") %}
    with step_0 as (
        select
            ({{ key }})::text as cell_key,
            coalesce(({{ size }}), 0) as cell_size,
            {%- for f in families %}
            ({{ f }})::text as family_{{ loop.index }},
            {%- endfor %}
            {{ "coalesce((" ~ unrecorded ~ "), false)" if unrecorded else "false" }} as unrecorded,
            {{ small }} as primary_suppressed,
            {{ small }} as suppressed
        from {{ cells }}
    )
    {%- set ns = namespace(previous='step_0', step=0) %}
    {%- for p in range(passes) %}
    {%- for f in families %}
    {%- set ns.step = ns.step + 1 %}
    , step_{{ ns.step }} as (
        select
            cell_key, cell_size,
            {%- for g in families %} family_{{ loop.index }},{% endfor %}
            unrecorded,
            primary_suppressed,
            suppressed or (
                family_{{ loop.index }} is not null
                and not suppressed
                and not unrecorded
                and count(*) filter (where suppressed) over (partition by family_{{ loop.index }}) = 1
                and row_number() over (partition by family_{{ loop.index }}, suppressed, unrecorded
                                       order by cell_size, cell_key) = 1
            ) as suppressed
        from {{ ns.previous }}
    )
    {%- set ns.previous = 'step_' ~ ns.step %}
    {%- endfor %}
    {%- endfor %}
    select
        cell_key,
        suppressed,
        case when primary_suppressed then 'primary'
             when suppressed then 'complementary' end as suppression
    from {{ ns.previous }}
{%- endmacro %}


{#- The sibling set of a segment row for one of its attributes, read from its segment key
    (``part``=value among the key's '|'-separated parts): the segments of the same dimension whose
    keys differ only in that part. NULL when the key has no such part. Unlike
    segment_sibling_set it needs no attribute column, so a segment whose value is not recorded
    (part=not recorded, the attribute column NULL) is still a sibling of the recorded values. -#}
{% macro segment_key_sibling_set(part, key_column='segment_key', dimension_column='segment_dimension') -%}
    case when ({{ key_column }}) ~ '(^|\|){{ part }}=' then
        {{ dimension_column }} || '#' || regexp_replace({{ key_column }}, '(^|\|){{ part }}=[^|]*', '')
    end
{%- endmacro %}


{#- The sibling set of a segment row for one of its attributes: the segments of the same
    dimension (combination of attributes) that differ only in ``attribute``, which together
    partition the segment "all the other attributes at these values" (published as a row of the
    lower dimension). NULL when the row does not break down by ``attribute``. Attributes not in
    a row's dimension are NULL in that row. -#}
{% macro segment_sibling_set(attribute, attributes, dimension_column='segment_dimension') -%}
    case when {{ attribute }} is not null then
        {{ dimension_column }}
        {%- for a in attributes if a != attribute %} || '|' || coalesce(({{ a }})::text, '*'){% endfor %}
    end
{%- endmacro %}
