{#- Small-cell suppression holds on every row: a suppressed row shows none of the listed
    measures (all NULL, never 0); an unsuppressed row was built from at least
    var('min_cell_size') units (size_column). -#}
{% test suppression_applied(model, size_column, measures, suppressed_column='suppressed') %}
select *
from {{ model }}
where ({{ suppressed_column }} and not ({% for m in measures %}{{ m }} is null{% if not loop.last %} and {% endif %}{% endfor %}))
   or (not {{ suppressed_column }} and not coalesce({{ size_column }} >= {{ var('min_cell_size') }}, false))
   or {{ suppressed_column }} is null
{% endtest %}
