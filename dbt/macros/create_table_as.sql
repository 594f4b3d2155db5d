{#- A model whose contract is enforced is built with CREATE TABLE AS and its NOT NULL constraints
    added afterwards, instead of dbt-postgres's CREATE TABLE (columns and constraints) followed by
    INSERT ... SELECT: PostgreSQL never plans an INSERT with parallel workers, so on two cores a
    contracted model's select ran on one of them while the other was idle (the session fact is
    built alone on the build's critical path; docs/PERFORMANCE.md has the measurement).

    The guarantees are dbt's: the contract's column names and types are asserted against the
    select first (get_assert_columns_equivalent, unchanged), the columns are written in the
    contract's order and cast to its types, and one ALTER TABLE adds every NOT NULL (a null fails
    the build, as the insert would have; dbt's transaction keeps the previous table). Only NOT
    NULL constraints are handled here, the only kind this project declares; a model with any
    other constraint (check, unique, primary or foreign key, model-level) keeps dbt's path. -#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if temporary or not contract_config.enforced or not contract_only_not_null(model) -%}
        {{ dbt.postgres__create_table_as(temporary, relation, sql) }}
    {%- else -%}
        {%- set sql_header = config.get('sql_header', none) -%}
        {%- set columns = model['columns'].values() | list -%}
        {{ sql_header if sql_header is not none }}
        {{ get_assert_columns_equivalent(sql) }}
        create {% if config.get('unlogged', default=false) %}unlogged {% endif %}table {{ relation }} as
        select
        {%- for col in columns %}
            cast({{ contract_column_name(col) }} as {{ col['data_type'] }}) as {{ contract_column_name(col) }}
            {{- "," if not loop.last }}
        {%- endfor %}
        from (
            {{ sql }}
        ) as model_subq;
        {%- set not_null = [] -%}
        {%- for col in columns if col.get('constraints') -%}
            {%- do not_null.append(contract_column_name(col)) -%}
        {%- endfor %}
        {%- if not_null %}
        alter table {{ relation }}
        {%- for name in not_null %}
            alter column {{ name }} set not null{{ "," if not loop.last }}
        {%- endfor %};
        {%- endif %}
    {%- endif -%}
{%- endmacro %}

{% macro contract_column_name(col) -%}
    {{- adapter.quote(col['name']) if col.get('quote') else col['name'] -}}
{%- endmacro %}

{#- true when the model declares no constraint but column-level NOT NULL -#}
{% macro contract_only_not_null(node) -%}
    {%- if node.get('constraints') -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- for col in node['columns'].values() -%}
        {%- for c in col.get('constraints') or [] -%}
            {%- if c['type'] != 'not_null' -%}
                {{- return(false) -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(true) -}}
{%- endmacro %}
