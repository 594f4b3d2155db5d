{#- Small-cell suppression holds on every row: a suppressed row shows none of the listed
    measures (all NULL, never 0); an unsuppressed row was built from at least
    var('min_cell_size') units (size_column), unless ``unrecorded`` (an optional SQL condition)
    says that the source records the measure for no unit at all (then nothing is disclosed). -#}
{% test suppression_applied(model, size_column, measures, suppressed_column='suppressed', unrecorded=none) %}
select *
from {{ model }}
where ({{ suppressed_column }} and not ({% for m in measures %}{{ m }} is null{% if not loop.last %} and {% endif %}{% endfor %}))
   or (not {{ suppressed_column }} and not coalesce({{ size_column }} >= {{ var('min_cell_size') }}, false)
       {%- if unrecorded %} and not coalesce(({{ unrecorded }}), false){% endif %})
   or {{ suppressed_column }} is null
{% endtest %}
