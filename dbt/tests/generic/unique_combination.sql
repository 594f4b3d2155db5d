{#- The combination of the columns is unique (a composite primary key; NULLs compare equal).
    Our own version of dbt_utils.unique_combination_of_columns (no dbt packages here). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as duplicates
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
