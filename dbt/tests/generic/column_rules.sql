{#- Every row obeys each column's rule (a boolean SQL expression over the row; false or NULL
    fails). ``rules``: column name -> expression. One scan for all the rules of a model, where a
    test per column scans the table once each: on the 5.4 M staged turns of 1M sessions, eleven
    not_null / accepted_range / accepted_values tests were seconds of the build's critical path
    (they gate every model downstream of the turns; docs/PERFORMANCE.md).
    A failing row is reported once per rule it breaks: the column, its value and the rule. -#}
{% test column_rules(model, rules) %}
with failing as (
    select *
    from {{ model }}
    where not coalesce(({{ rules.values() | join(') and (') }}), false)
)

select r.column_name, r.failing_value, r.rule
from failing m
cross join lateral (values
    {%- for column, rule in rules.items() %}
    ({{ "'" ~ column ~ "'" }}, m.{{ adapter.quote(column) }}::text, {{ "'" ~ rule | replace("'", "''") ~ "'" }},
     coalesce(({{ rule }}), false)){{ "," if not loop.last }}
    {%- endfor %}
) as r (column_name, failing_value, rule, passed)
where not r.passed
{% endtest %}
