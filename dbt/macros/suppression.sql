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

  The caller NULLs every count, rate and interval of a suppressed row and keeps its identifiers.
-#}
{% macro small_cell_suppression(cells, key, size, families, passes=3) -%}
{%- set k = var('min_cell_size') -%}
    with step_0 as (
        select
            ({{ key }})::text as cell_key,
            coalesce(({{ size }}), 0) as cell_size,
            {%- for f in families %}
            ({{ f }})::text as family_{{ loop.index }},
            {%- endfor %}
            coalesce(({{ size }}), 0) < {{ k }} as primary_suppressed,
            coalesce(({{ size }}), 0) < {{ k }} as suppressed
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
            primary_suppressed,
            suppressed or (
                family_{{ loop.index }} is not null
                and not suppressed
                and count(*) filter (where suppressed) over (partition by family_{{ loop.index }}) = 1
                and row_number() over (partition by family_{{ loop.index }}, suppressed order by cell_size, cell_key) = 1
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
