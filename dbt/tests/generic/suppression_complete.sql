{#- Complementary suppression is complete: no sibling set (rows with the same non-NULL value of
    a family expression: cells that partition a published total) of two or more cells has
    exactly one suppressed cell, which the total minus its siblings would give back.
    ``families``: SQL expressions over the model's columns; ``segment_attributes``: for segment
    tables, one family per attribute (macro segment_sibling_set); ``segment_keys``: the same from
    the segment key's parts (macro segment_key_sibling_set). -#}
{% test suppression_complete(model, families=[], segment_attributes=[], segment_keys=[], suppressed_column='suppressed') %}
{%- set all_families = families | list %}
{%- for a in segment_attributes %}
{%- do all_families.append(segment_sibling_set(a, segment_attributes)) %}
{%- endfor %}
{%- for part in segment_keys %}
{%- do all_families.append(segment_key_sibling_set(part)) %}
{%- endfor %}
{%- for f in all_families %}
select {{ loop.index }} as family, ({{ f }})::text as sibling_set, count(*) as cells
from {{ model }}
where ({{ f }}) is not null
group by ({{ f }})::text
having count(*) filter (where {{ suppressed_column }}) = 1 and count(*) >= 2
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{% endtest %}
